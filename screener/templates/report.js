"use strict";
(function () {
  var table = document.getElementById("videos");
  if (!table) { return; }
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-key]"));
  var shown = document.getElementById("shown");
  var search = document.getElementById("search");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=show]"));
  var TEXT = { name: true, cat: true };
  var sortKey = "score", dir = -1;

  function value(row, key) {
    var v = row.getAttribute("data-" + key);
    if (TEXT[key]) { return (v || "").toLowerCase(); }
    return v === "" || v === null ? -Infinity : parseFloat(v);
  }
  function sortBy(key, keepDir) {
    if (!keepDir) { dir = key === sortKey ? -dir : (TEXT[key] ? 1 : -1); }
    sortKey = key;
    var sorted = rows.slice().sort(function (a, b) {
      var x = value(a, key), y = value(b, key);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return c * dir || (+a.getAttribute("data-i")) - (+b.getAttribute("data-i"));
    });
    var frag = document.createDocumentFragment();
    sorted.forEach(function (r) { frag.appendChild(r); });
    tbody.appendChild(frag);
    heads.forEach(function (h) {
      h.setAttribute("aria-sort", h.getAttribute("data-key") === key
        ? (dir > 0 ? "ascending" : "descending") : "none");
    });
  }
  function filter() {
    var on = {};
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    var q = search.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var ok = on[r.getAttribute("data-cat")] !== false &&
        (!q || r.getAttribute("data-name").toLowerCase().indexOf(q) >= 0);
      r.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
  }
  heads.forEach(function (h) {
    h.querySelector("button").addEventListener("click", function () {
      sortBy(h.getAttribute("data-key"), false);
    });
  });
  boxes.forEach(function (b) { b.addEventListener("change", filter); });
  search.addEventListener("input", filter);

  filter();
})();
