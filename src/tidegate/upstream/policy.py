"""Pure rules deciding what a project page shows when several upstreams are configured."""

from __future__ import annotations

from datetime import datetime, timezone

from ..simple.model import File, Project, dedupe_files


def parse_upload_time(value: str) -> float | None:
    """Seconds since the epoch for an ISO 8601 UTC upload time, or None if unparseable."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def apply_cooldown(files: tuple[File, ...], cooldown: float, now: float) -> tuple[File, ...]:
    """Hide files uploaded less than `cooldown` seconds ago. Files with no upload time stay:
    there is nothing to judge them by, and hiding them would hide whole static mirrors."""
    if cooldown <= 0:
        return files
    cutoff = now - cooldown
    kept = []
    for f in files:
        uploaded = parse_upload_time(f.upload_time) if f.upload_time else None
        if uploaded is None or uploaded <= cutoff:
            kept.append(f)
    return tuple(kept)


def combine(parts: list[tuple[Project, float]], now: float) -> Project:
    """One page from the (project, cooldown) pairs of the upstreams that have it, highest
    priority first. With one part this is that upstream's page; with several (a project the
    configuration merges) files are unioned by filename, the higher-priority upstream winning,
    and page-level metadata comes from the first upstream."""
    first = parts[0][0]
    files: list[File] = []
    versions: list[str] = []
    for project, cooldown in parts:
        files.extend(apply_cooldown(project.files, cooldown, now))
        versions.extend(project.versions or ())
    kept = dedupe_files(files)
    listed = tuple(dict.fromkeys(versions)) if any(p.versions is not None for p, _ in parts) else None
    return Project(
        name=first.name,
        files=kept,
        versions=listed,
        status=first.status,
        status_reason=first.status_reason,
        tracks=first.tracks,
        alternate_locations=first.alternate_locations,
    )
