"""`orchestrate review --json`: the whole review as one JSON document. Stdlib only.

The document's shape is versioned and documented by a JSON Schema in the repository,
schemas/review-v1.schema.json (the tests validate every review against it). A change
that removes or renames a key, or changes a type or a meaning, makes version 2; adding
a key keeps version 1. Times are seconds since boot (the capture's clock) unless a key
says `seconds` (a duration).
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.review_model import (
    BootSummary,
    BootView,
    CaptureReview,
    DomainView,
    RunSummary,
    RunView,
    Verdict,
    critical_path,
    path_seconds,
)

SCHEMA = "orchestrate-review"
VERSION = 1


def review_document(review: CaptureReview) -> dict[str, Any]:
    listed = len(review.boots)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "capture": {"name": review.name, "lines": review.lines, "boots": review.boots_total},
        "boots": [_boot_summary(b) for b in review.boots],
        "boots_not_listed": review.boots_total - listed,
        "boot": _boot(review.boot) if review.boot is not None else None,
        "exit_code": review.exit_code,
    }


def dumps(review: CaptureReview) -> str:
    return json.dumps(review_document(review), indent=1, ensure_ascii=True) + "\n"


def _verdict(verdict: Verdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {"word": verdict.word, "detail": verdict.detail, "code": verdict.code,
            "text": verdict.text}


def _boot_summary(boot: BootSummary) -> dict[str, Any]:
    return {"number": boot.number, "xen": boot.xen, "first_line": boot.first_line,
            "last_line": boot.last_line, "lines_of_ours": boot.ours, "runs": boot.runs,
            "verdict": _verdict(boot.verdict)}


def _run_summary(run: RunSummary) -> dict[str, Any]:
    return {"number": run.number, "mode": run.mode, "version": run.version or None,
            "pid": run.pid, "first_line": run.first_line, "first_uptime": run.first_uptime,
            "last_uptime": run.last_uptime, "is_boot": run.is_boot,
            "verdict": _verdict(run.verdict)}


def _boot(boot: BootView) -> dict[str, Any]:
    shutdown = boot.shutdown
    return {
        "number": boot.number, "xen": boot.xen, "first_line": boot.first_line,
        "last_line": boot.last_line, "lines_of_ours": boot.ours,
        "runs": [_run_summary(r) for r in boot.runs],
        "runs_not_listed": boot.runs_total - len(boot.runs),
        "run": _run(boot.reviewed) if boot.reviewed is not None else None,
        "after": {
            "runs": [_run_summary(r) for r in boot.after_runs],
            "followers": [dict(f) for f in boot.followers],
            "events": [{"uptime": e.uptime, "event": e.event, "fields": e.fields}
                       for e in boot.after],
            "events_not_listed": boot.after_seen - len(boot.after),
            "restarts": [{
                "domain": r.domain, "at": r.at, "domid": r.domid, "was": r.was,
                "cause": r.cause, "plumbing_seconds": r.plumbing, "ready_at": r.ready,
                "vifs": [{"domain": d, "devid": n, "at": at, "seconds": s}
                         for d, n, at, s in r.vifs],
                "repaired_at": r.done, "repair_seconds": r.seconds,
            } for r in boot.repairs],
            "shutdown": None if shutdown is None else {
                "at": shutdown.at,
                "levels": [{"level": n, "levels": of, "domains": d.split(", "), "at": at}
                           for n, of, d, at in shutdown.levels],
                "stopped": [{"domain": d, "state": how, "at": at, "seconds": s}
                            for d, how, at, s in shutdown.stopped],
                "verdict": _verdict(shutdown.verdict),
            },
        },
    }


def _domain(dom: DomainView, on_path: set[str]) -> dict[str, Any]:
    return {
        "name": dom.name, "domid": dom.domid, "status": dom.status,
        "create_to_ready": dom.seconds, "cause": dom.cause, "hint": dom.hint,
        "critical": dom.name in on_path,
        "phases": {"start": dom.start, "created": dom.created,
                   "provisioned": dom.provisioned, "booting": dom.booting,
                   "ready": dom.ready, "ended": dom.ended},
        "vifs": [{"devid": v.devid, "backend": v.backend, "at": v.at, "seconds": v.seconds}
                 for v in dom.vifs],
    }


def _run(run: RunView) -> dict[str, Any]:
    path = critical_path(run.domains)
    on_path = {d.name for d in path}
    failure = run.failure
    return {
        "number": run.number, "mode": run.mode, "version": run.version or None,
        "pid": run.pid, "first_line": run.first_line, "first_uptime": run.first_uptime,
        "last_uptime": run.last_uptime, "lines_of_ours": run.lines, "cut": run.cut,
        "rejoined": run.rejoined, "step_count": run.step_count,
        "steps": [{"number": s.number, "name": s.name, "status": s.status or "not run",
                   "seconds": s.seconds, "approximate": s.approximate, "detail": s.detail,
                   "began": s.began, "ended": s.ended}
                  for _, s in sorted(run.steps.items())],
        "domains": [_domain(d, on_path) for d in run.domains.values()],
        "untracked_domains": run.untracked_domains,
        "critical_path": {"domains": [d.name for d in path],
                          "seconds": round(path_seconds(path), 2)},
        "verdict": _verdict(run.verdict),
        "first_failure": None if failure is None else {
            "uptime": failure.uptime, "step": failure.step.strip() or None,
            "text": failure.text, "hint": failure.hint or None},
        "exit_code": run.exit_code,
    }
