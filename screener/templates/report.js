"use strict";
// Sorting and filtering for the videos table. At most PAGE matching rows are displayed at once
// (the others are hidden, which costs no layout), so a report of thousands of videos stays
// quick; "show more" displays the next PAGE.
(function () {
  var table = document.getElementById("videos");
  if (!table) { return; }
  var PAGE = +table.getAttribute("data-page") || 500;
  var tbody = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-key]"));
  var shown = document.getElementById("shown");
  var more = document.getElementById("more");
  var search = document.getElementById("search");
  var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=show]"));
  var NUMBERS = ["score", "max", "share", "faces", "duration"];
  var items = Array.prototype.map.call(tbody.rows, function (r) {
    var it = { row: r, i: +r.getAttribute("data-i"), cat: r.getAttribute("data-cat"),
               name: (r.getAttribute("data-name") || "").toLowerCase() };
    NUMBERS.forEach(function (k) {
      var v = r.getAttribute("data-" + k);
      it[k] = v === "" || v === null ? -Infinity : parseFloat(v);
    });
    return it;
  });
  var sortKey = "score", dir = -1, limit = PAGE;

  function sortBy(key) {
    dir = key === sortKey ? -dir : (key === "name" || key === "cat" ? 1 : -1);
    sortKey = key;
    items.sort(function (a, b) {
      var x = a[key], y = b[key];
      return (x < y ? -1 : x > y ? 1 : 0) * dir || a.i - b.i;
    });
    var frag = document.createDocumentFragment();
    items.forEach(function (it) { frag.appendChild(it.row); });
    tbody.appendChild(frag);
    heads.forEach(function (h) {
      h.setAttribute("aria-sort", h.getAttribute("data-key") === key
        ? (dir > 0 ? "ascending" : "descending") : "none");
    });
    apply();
  }
  function apply() {
    var on = {};
    boxes.forEach(function (b) { on[b.value] = b.checked; });
    var q = search.value.trim().toLowerCase();
    var matching = 0, displayed = 0;
    items.forEach(function (it) {
      var match = on[it.cat] !== false && (!q || it.name.indexOf(q) >= 0);
      var show = match && displayed < limit;
      if (match) { matching += 1; }
      if (show) { displayed += 1; }
      if (it.row.hidden === show) { it.row.hidden = !show; }
    });
    shown.textContent = String(displayed);
    more.hidden = matching <= displayed;
    more.textContent = "show " + Math.min(PAGE, matching - displayed) + " more of " +
      (matching - displayed);
  }
  function refilter() { limit = PAGE; apply(); }
  heads.forEach(function (h) {
    h.querySelector("button").addEventListener("click", function () {
      sortBy(h.getAttribute("data-key"));
    });
  });
  boxes.forEach(function (b) { b.addEventListener("change", refilter); });
  search.addEventListener("input", refilter);
  more.addEventListener("click", function () { limit += PAGE; apply(); });
  apply();
})();
