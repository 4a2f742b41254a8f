"""Incremental scans: remember each file's result in SQLite, rescan only what changed.

A cron job or systemd timer reruns the same scan on a drop folder every few minutes; this
package makes that cheap and safe, whatever engine computes the results (the driver owns the
state and the report; engines only compute):

- `store`: the database and its lock (`ScanState`), and where a state lives;
- `schema`: what a state holds (tables, rows) and how a file is recognised as one;
- `plan`: per file, scan, reuse or defer, and which stored files drop out (no side effects);
- `incremental`: the sink a scan writes to (`StateSink`): records each finished video, then
  rewrites the report with the report writers;
- `saved`: what a state holds, read without its lock (`screener report`, the HTML page).
"""
from .incremental import ReportSummary, RunSummary, ScanInterrupted, StateSink
from .plan import FileStat, Plan, fingerprint, path_key, plan_files
from .saved import HeatCache, SavedScan, read_saved
from .schema import LAST_RUN, result_from_json, result_to_json
from .store import ScanState, default_state_path, failure, lock_path, state_outputs

__all__ = ["ReportSummary", "RunSummary", "ScanInterrupted", "StateSink", "FileStat", "Plan",
           "fingerprint", "path_key", "plan_files", "HeatCache", "SavedScan", "read_saved",
           "LAST_RUN", "ScanState", "default_state_path", "failure", "lock_path",
           "result_from_json", "result_to_json", "state_outputs"]
