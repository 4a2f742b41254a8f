"""Videos in an object store (`s3://`, and other fsspec schemes): list them, describe them, and
copy one to a local temporary file while it is read.

Needs fsspec and the scheme's package (s3fs: `pip install 'screener[s3]'`); without them an
object URL is a StoreError that says how to install it. Credentials and the endpoint come from
where the store's own tools look (S3: the AWS_* environment variables, AWS_ENDPOINT_URL
included, and ~/.aws), so MinIO and other S3-compatible servers work unchanged. They are never
written anywhere by screener: messages name the URL and the endpoint, scrubbed (`scrub`).

- Listing (`expand`): a key is a file (kept whatever its name), a prefix a folder (every video
  below it, hidden names skipped), and globs work, as for local paths. What the listing says of
  each object (size, ETag, version id, LastModified) is this run's snapshot: the incremental
  plan reads it from there, so an unchanged rerun lists the prefix and reads nothing more.
- Reading (`local_copy`): the object is streamed into a temporary file in this process's
  scratch folder (screener.scratch), opened there, and deleted once the video is read. A
  process reads one video at a time, so the local disk holds at most one video per reading
  process; what a killed scan left is removed by the next one.
- Failures: a transient one (no connection, a timeout, a 5xx answer, throttling) is tried
  again, ATTEMPTS tries in all with doubling waits, and the store's own retries are turned off
  so that this is the bound. While listing, a failure is a StoreError (no such bucket, access
  denied, an endpoint that cannot be reached: the CLI's exit 2); while reading one object it is
  a VideoError, that video's error row.
"""
from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import os
import random
import re
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from . import scratch
from .errors import InputError, NoMatch, StoreError, VideoError

log = logging.getLogger(__name__)

ATTEMPTS = 4            # tries of one request (a listing, a HEAD, a copy) before giving up
BACKOFF_S = 0.5         # the wait before the second try; doubled each time, with jitter
GLOB_CHARS = frozenset("*?[")
S3 = ("s3", "s3a")
# scheme -> (the fsspec package it needs, how to install it)
PACKAGES = {proto: ("s3fs", "pip install 'screener[s3]'") for proto in S3}
# scheme -> options that turn the store's own retries off (ours are the bound)
_OPTIONS = {proto: {"config_kwargs": {"retries": {"mode": "standard", "total_max_attempts": 1}}}
            for proto in S3}

DOWNLOADS = 0           # objects this process began to copy (tests: a Ray driver copies none)
_filesystems: dict = {}
_versioned: dict = {}
_listed: dict[str, dict] = {}   # URL -> what this run's listing said of it


# --- the store ------------------------------------------------------------------------------

def _split(url: str) -> tuple[str, str]:
    """(scheme, "bucket/key") of a URL (screener.sources tells URLs from local paths)."""
    proto, rest = url.split("://", 1)
    return proto.lower(), rest


def filesystem(url: str, versions: bool = False):
    """This process's fsspec filesystem for the URL's scheme (`versions`: version-aware, where
    the bucket keeps versions). Raises StoreError when its package is not installed."""
    proto, rest = _split(url)
    aware = versions and _bucket_versioned(proto, rest.split("/", 1)[0])
    key = (proto, aware)
    if key not in _filesystems:
        _filesystems[key] = _make(proto, aware)
    return _filesystems[key]


def _make(proto: str, version_aware: bool = False):
    try:
        import fsspec
        options = dict(_OPTIONS.get(proto, {}))
        if version_aware:
            options["version_aware"] = True
        fs = fsspec.filesystem(proto, skip_instance_cache=True, use_listings_cache=False,
                               **options)
    except ImportError as e:
        if proto in PACKAGES:
            package, install = PACKAGES[proto]
            raise StoreError(f"{proto}:// paths need {package}: {install}") from None
        raise StoreError(f"{proto}:// paths need fsspec and its package for {proto}:// "
                         f"({str(e).splitlines()[0] if str(e) else 'not installed'})") from None
    except ValueError as e:  # fsspec knows no such protocol
        raise StoreError(f"{proto}:// is not a storage scheme screener can read ({e})") from None
    if hasattr(fs, "retries"):  # s3fs retries some errors itself: ours are the bound
        fs.retries = 1
    return fs


def _bucket_versioned(proto: str, bucket: str) -> bool:
    """Whether an S3 bucket keeps versions (then the version id is part of a fingerprint).
    Asked once per bucket and process; a store that will not say is taken as unversioned."""
    if proto not in S3:
        return False
    if (proto, bucket) not in _versioned:
        try:
            fs = filesystem(f"{proto}://{bucket}")
            _versioned[proto, bucket] = bool(fs.is_bucket_versioned(bucket))
        except StoreError:
            raise
        except Exception as e:  # the listing that follows says what is wrong, if anything
            log.debug("%s: cannot tell whether it keeps versions: %s", bucket, reason(e))
            if not transient(e):  # denied: taken as unversioned from now on
                _versioned[proto, bucket] = False
            return False
    return _versioned[proto, bucket]


def _endpoint(fs) -> str:
    try:
        return scrub(str(fs.s3.meta.endpoint_url))
    except Exception:  # not S3, or not connected
        return ""


# --- errors ---------------------------------------------------------------------------------

_TRANSIENT_NAMES = {"ConnectionError", "HTTPClientError", "ReadTimeoutError",
                    "ConnectTimeoutError", "ResponseParserError", "IncompleteReadError",
                    "ClientPayloadError", "ServerDisconnectedError", "ClientConnectionError",
                    "TimeoutError", "IncompleteRead"}
_TRANSIENT_ERRNOS = {errno.EBUSY, errno.EAGAIN, errno.ETIMEDOUT, errno.ECONNRESET,
                     errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                     getattr(errno, "EREMOTEIO", errno.EIO)}


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _status(e: BaseException) -> int:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def transient(e: BaseException) -> bool:
    """Whether trying again may help: no connection, a timeout, a 5xx answer, throttling."""
    for x in _chain(e):
        if isinstance(x, (FileNotFoundError, PermissionError)):
            return False
        if {c.__name__ for c in type(x).__mro__} & _TRANSIENT_NAMES:
            return True
        if isinstance(x, OSError) and x.errno in _TRANSIENT_ERRNOS:
            return True
        status = _status(x)
        if status >= 500 or status == 429:
            return True
    return False


def _retry(call: Callable, what: str = ""):
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except Exception as e:
            if attempt == ATTEMPTS or not transient(e):
                raise
            wait = BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.75, 1.25)
            log.info("%s: %s; trying again in %.1f s (try %d of %d)", what, reason(e), wait,
                     attempt + 1, ATTEMPTS)
            time.sleep(wait)


_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                "AWS_SECURITY_TOKEN")
_QUERY_SECRETS = re.compile(r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s\"']+", re.I)


def scrub(text: str) -> str:
    """`text` without credentials: the AWS_* keys and tokens of this environment, the user
    and password part of a URL, and the signature part of a presigned URL."""
    for name in _SECRET_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = re.sub(r"(\w://)[^/@\s]+@", r"\1***@", text)
    return _QUERY_SECRETS.sub(r"\1***", text)


def _code(e: BaseException) -> str:
    for x in _chain(e):
        response = getattr(x, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code"):
            return str(response["Error"]["Code"])
    return ""


def reason(e: BaseException) -> str:
    """One line that says why, without credentials."""
    code = _code(e)
    if isinstance(e, PermissionError):
        text = "access denied" + (f" ({code})" if code not in ("", "403", "AccessDenied")
                                  else "")
    elif isinstance(e, FileNotFoundError):
        text = "no such bucket" if "bucket" in str(e).lower() else "no such object"
    else:
        message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        lines = str(message).strip().splitlines()
        text = lines[0] if lines else type(e).__name__
        if code and code not in text:
            text = f"{code}: {text}"
    return scrub(text)


def _store_error(url: str, e: Exception, fs) -> StoreError:
    """A listing that failed, as one line (the CLI's exit 2)."""
    what = reason(e)
    if transient(e):
        at = _endpoint(fs)
        return StoreError(f"cannot reach the object store for {scrub(url)}"
                          f"{f' at {at}' if at else ''}: {what} (after {ATTEMPTS} tries)")
    if isinstance(e, PermissionError):
        return StoreError(f"{what} listing {scrub(url)}: check the credentials (AWS_* "
                          "variables or ~/.aws) and the bucket's policy")
    if what == "no such bucket":
        return StoreError(f"no such bucket: {scrub(url)}")
    return StoreError(f"cannot list {scrub(url)}: {what}")


# --- listing --------------------------------------------------------------------------------

def _url(proto: str, name: str) -> str:
    return f"{proto}://{name}"


def _below(prefix: str, infos: dict, proto: str, keep: Callable[[str], bool]) -> list[str]:
    """The video objects below a prefix, hidden names (any part below it) skipped, sorted.
    A key part "." or ".." is no hidden name: such an object is listed like any other (a key
    is a name, never resolved as a path), or a video could pass unscreened."""
    out = []
    for name, info in infos.items():
        rel = name[len(prefix):].lstrip("/") if name.startswith(prefix) else name
        if info.get("type") != "file" or any(p.startswith(".") and p not in (".", "..")
                                             for p in rel.split("/")):
            continue
        if keep(name):
            out.append(_remember(_url(proto, name), info))
    return sorted(out, key=lambda u: u.split("/"))


def _remember(url: str, info: dict) -> str:
    _listed[url] = info
    return url


def forget_listings() -> None:
    """Start a new snapshot: what an earlier listing said is not used again."""
    _listed.clear()


def names_folder(url: str) -> bool:
    """Whether a URL names a folder, whatever it holds: a bucket, or a prefix ending in "/"."""
    rest = _split(url)[1]
    return "/" not in rest.rstrip("/") or rest.endswith("/")


def expand(url: str, keep: Callable[[str], bool]) -> list[str]:
    """The object URLs a PATH argument names (see the module), in sorted order; below a
    prefix, those whose name `keep` accepts (a video's extension). [] for an empty folder
    (`names_folder`). Raises StoreError when the store cannot be listed (no such bucket,
    access denied, unreachable), InputError when nothing is there."""
    scratch.sweep()  # what a killed scan left
    if re.match(r"^\w+://[^/]*@", url):
        raise InputError(f"{scrub(url)}: credentials do not go in a URL; use the AWS_* "
                         "variables or ~/.aws")
    proto, path = _split(url)
    fs = filesystem(url, versions=True)
    try:
        if GLOB_CHARS & set(path):
            matches = _retry(lambda: fs.glob(path, detail=True), scrub(url))
            out = []
            for name, info in sorted(matches.items(), key=lambda kv: kv[0].split("/")):
                if info.get("type") == "directory":
                    out.extend(_below(name, _retry(lambda: fs.find(name, detail=True)), proto,
                                      keep))
                elif not os.path.basename(name).startswith(".") and keep(name):
                    out.append(_remember(_url(proto, name), info))
            if not out:
                _check_bucket(fs, url)
                raise NoMatch(f"no object matches {url!r}")
            return out
        try:
            info = _retry(lambda: fs.info(path), scrub(url))
        except FileNotFoundError:
            info = None
        if info is not None and info.get("type") == "file":
            return [_remember(url, info)]
        if info is not None:
            return _below(path.rstrip("/"), _retry(lambda: fs.find(path, detail=True),
                                                   scrub(url)), proto, keep)
        _check_bucket(fs, url)
        if names_folder(url):
            return []
        raise InputError(f"no such object or prefix: {url!r}")
    except (InputError, StoreError):
        raise
    except Exception as e:
        raise _store_error(url, e, fs) from None


def _check_bucket(fs, url: str) -> None:
    """Raise StoreError when the URL's bucket does not exist (or cannot be listed)."""
    bucket = _split(url)[1].split("/", 1)[0]
    try:
        _retry(lambda: fs.info(bucket), scrub(url))
    except FileNotFoundError:
        raise StoreError(f"no such bucket: {scrub(url)}") from None


def _info(url: str, fresh: bool) -> dict | None:
    info = None if fresh else _listed.get(url)
    if info is None:
        try:
            fs = filesystem(url, versions=True)
            info = _retry(lambda: fs.info(_split(url)[1]), scrub(url))
        except FileNotFoundError:
            return None
        except Exception as e:  # the engine's copy will say why, on its row
            log.warning("%s: cannot describe it: %s", scrub(url), reason(e))
            return None
    return info if info.get("type") == "file" else None


def _modified_ns(info: dict) -> int:
    value = next((info[k] for k in ("LastModified", "mtime", "updated", "last_modified")
                  if info.get(k) is not None), 0)
    if hasattr(value, "timestamp"):
        value = value.timestamp()
    elif isinstance(value, str):
        from datetime import datetime
        value = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return int(float(value)) * 10**9  # whole seconds: a HEAD says no more


def stat(url: str, fresh: bool = False) -> tuple[int, int, int] | None:
    """An object's size, LastModified in ns and a number that names its stored version (from
    its ETag and version id, as an inode names a file): from this run's listing, else (and
    with `fresh`) from a HEAD. None when it is gone or cannot be described."""
    info = _info(url, fresh)
    if info is None:
        return None
    version = hashlib.sha256(_identity(info).encode()).digest()
    return int(info.get("size") or 0), _modified_ns(info), int.from_bytes(version[:8], "big") >> 1


def _identity(info: dict) -> str:
    parts = [str(int(info.get("size") or 0))]
    for k in ("ETag", "etag", "md5Hash", "VersionId", "generation"):
        value = info.get(k)
        if value not in (None, "", "null"):
            parts.append(f"{k}={str(value).strip(chr(34))}")
    return ":".join(parts)


def fingerprint(url: str) -> str:
    """size:ETag[:version] from this run's listing (else a HEAD): "" when the object is gone
    or cannot be described."""
    info = _info(url, fresh=False)
    return "" if info is None else _identity(info)


# --- reading --------------------------------------------------------------------------------

_copies = itertools.count()


@contextmanager
def local_copy(url: str) -> Iterator[str]:
    """A temporary local copy of the object at `url`, deleted when the block ends. Raises
    VideoError (one line, no credentials) when it cannot be made."""
    global DOWNLOADS
    ext = os.path.splitext(url.rsplit("/", 1)[-1])[1]
    ext = ext if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", ext) else ""
    try:
        fs = filesystem(url)
        target = os.path.join(scratch.folder(), f"{next(_copies)}{ext}")
    except (StoreError, OSError) as e:
        raise VideoError(scrub(str(e)) if isinstance(e, StoreError) else
                         f"cannot make a temporary copy: {e.strerror or e}") from None
    try:
        DOWNLOADS += 1
        try:
            _retry(lambda: fs.get_file(_split(url)[1], target), scrub(url))
        except Exception as e:
            what = reason(e)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                what = f"no space left for a temporary copy in {scratch.root()}"
            elif transient(e):
                what += f" (after {ATTEMPTS} tries)"
            raise VideoError(f"cannot read the object: {what}") from None
        # Only the copy's failures are the object's: what the reader raises passes as it is.
        yield target
    finally:
        try:
            os.unlink(target)
        except FileNotFoundError:
            pass
