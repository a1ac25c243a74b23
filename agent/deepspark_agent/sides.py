"""`compare`'s sides: each argument read as labelled results, recomputed from raw files.

A side is a run set, an `up` evaluation (every model it holds), a result bundle (`pack`'s
signed tar, unpacked and assessed) or a collector's result (its JSON, and its artifacts
fetched into a scratch folder and assessed; a result stored without artifacts is compared
on its figures alone). Nothing is trusted from a stored JSON when the raw files are there.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from pathlib import Path

import httpx

from deepspark_agent import evaluations
from deepspark_agent.submit import answer_detail, transport_reason
from deepspark_core.assess import assess
from deepspark_core.compare import Comparison, Labelled, compare
from deepspark_core.errors import DeepSparkError
from deepspark_core.result_bundle import MAX_MEMBER_SIZE, MAX_TOTAL, unpack
from deepspark_core.results import PLAN_FILE, Result
from deepspark_core.safetar import name_problem

RESULT_URL = re.compile(r"(?P<base>https?://.+?)/api/v1/results/(?P<id>\d+)/?")
CHUNK = 1 << 20


class SideError(DeepSparkError):
    """A side that cannot be read: a missing path, not a result, a collector's refusal."""


def compare_sides(
    sides: Sequence[str], collector: str | None, scratch: Path, timeout: float
) -> Comparison:
    """The sides labelled A, B, C... (in scratch: what bundles and collectors hold, which
    must outlive the comparison while its plots are drawn), compared."""
    labels = [*string.ascii_uppercase, *(f"S{i}" for i in range(27, len(sides) + 1))]
    loaded = [
        member
        for label, side in zip(labels, sides, strict=False)
        for member in load_side(side, label, collector, scratch / label, timeout)
    ]
    return compare(loaded)


def load_side(
    side: str, label: str, collector: str | None, scratch: Path, timeout: float
) -> list[Labelled]:
    """One side's results, each with the run set that holds its raw files."""
    if found := RESULT_URL.fullmatch(side):
        return [fetch_result(found["base"], int(found["id"]), label, scratch, timeout)]
    if side.startswith(("http://", "https://")):
        raise SideError(f"{side}: not a collector result's URL (COLLECTOR/api/v1/results/ID)")
    path = Path(side)
    if side.isdigit() and not path.exists():
        if collector is None:
            raise SideError(f"{side}: no such file or directory (a result id needs --collector)")
        return [fetch_result(collector, int(side), label, scratch, timeout)]
    if not path.exists():
        raise SideError(f"{side}: no such file or directory")
    if (path / evaluations.EVALUATION_FILE).is_file():
        return [Labelled(label, assess(s), s, side) for s in evaluations.run_sets(path)]
    if (path / PLAN_FILE).is_file():
        return [Labelled(label, assess(path), path, side)]
    if path.is_file():
        run_set = unpack(path, scratch).run_set
        return [Labelled(label, assess(run_set), run_set, side)]
    raise SideError(f"{side}: not a run set, an `up` evaluation, a result bundle or a result")


def fetch_result(
    collector: str, result_id: int, label: str, scratch: Path, timeout: float
) -> Labelled:
    """A collector's result, recomputed from its artifacts when it kept them."""
    url = f"{collector.rstrip('/')}/api/v1/results/{result_id}"
    with httpx.Client(timeout=timeout) as client:
        try:
            result = Result.model_validate(_get(client, url).json()["result"])
            listed = {a["name"]: int(a["size"]) for a in _get(client, f"{url}/artifacts").json()}
        except (ValueError, KeyError, TypeError) as exc:  # pydantic's errors are ValueErrors
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SideError(f"{url}: not a result: {reason}") from None
        if not listed:
            return Labelled(label, result, None, f"{url} (figures alone: no artifacts)")
        _download(client, url, listed, scratch)
    return Labelled(label, assess(scratch), scratch, url)


def _get(client: httpx.Client, url: str) -> httpx.Response:
    try:
        answer = client.get(url)
    except httpx.TransportError as exc:
        raise SideError(f"{url}: {transport_reason(exc)}") from None
    if answer.status_code != 200:
        raise SideError(f"{url}: HTTP {answer.status_code}: {answer_detail(answer)}")
    return answer


def _download(client: httpx.Client, url: str, listed: dict[str, int], dest: Path) -> None:
    """Each listed artifact into dest under its name, which must be a safe relative one; no
    more than the sizes listed, and within a result bundle's limits."""
    if sum(listed.values()) > MAX_TOTAL:
        raise SideError(f"{url}: artifacts over {MAX_TOTAL} bytes")
    for name, size in listed.items():
        problem = name_problem(name) or ("over the size limit" if size > MAX_MEMBER_SIZE else None)
        if problem:
            raise SideError(f"{url}: artifact {name!r}: {problem}")
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with client.stream("GET", f"{url}/artifacts/{name}") as answer, path.open("xb") as f:
                if answer.status_code != 200:
                    raise SideError(f"{url}/artifacts/{name}: HTTP {answer.status_code}")
                for chunk in answer.iter_bytes(CHUNK):
                    if f.tell() + len(chunk) > size:
                        raise SideError(f"{url}/artifacts/{name}: longer than listed")
                    f.write(chunk)
        except httpx.TransportError as exc:
            raise SideError(f"{url}/artifacts/{name}: {transport_reason(exc)}") from None
