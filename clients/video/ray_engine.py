"""`percept video --engine ray`: the units of every input (clients.video.units) spread over a pool
of Ray actors, each with its own backend (its own Triton client channel, or ONNX Runtime in the
actor); the driver keeps run.json (clients.video.manifest), retries the unit of a worker that died
on a fresh worker, joins each input once all its units are committed, and shows one bar.

Ray Core (actors, ray.wait) and not Ray Data: a unit here is committed, counted and retried by
this code, which Ray Data's blocks and its own retries would hide. Ray is imported here and in
clients.video.ray_pool only, and they only with --engine ray. ``--out`` must be a folder every node sees.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections import deque
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from clients.video.manifest import MANIFEST, Manifest, command_key
from clients.video.options import RESUME_HINT, VideoOptions
from clients.video.progress import RunBar
from clients.video.ray_pool import WORKER_START_TIMEOUT_S, EngineError, Slot, UnitWorker, connect, import_ray
from clients.video.report import InputResult, RunReport, is_complete
from clients.video.sources import InputError, InputSource, open_reader
from clients.video.units import Unit, clear_outputs, committed, join, plan, remove_units
from clients.video.units import write_summary as write_input_summary

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often the driver looks at the units in flight (and the bar moves)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass
class _Input:
    source: InputSource
    units: list[Unit]
    fps: float
    result: InputResult
    planned: int = 0  # frames the input is expected to have (0: not known)
    done_before: int = 0  # frames in units committed by an earlier run
    model: str = ""
    began: float | None = None  # its first unit handed out (perf_counter)
    ended: float | None = None  # joined


class _Driver:
    def __init__(self, ray, sources: list[InputSource], options: VideoOptions, t0: float) -> None:
        self.ray, self.options = ray, options
        r = options.ray
        self.worker_cls = ray.remote(num_cpus=r.num_cpus, num_gpus=r.num_gpus, max_restarts=0)(UnitWorker)
        self.manifest = Manifest.open(
            options.out_dir / MANIFEST,
            command_key(sources, options),
            {"address": r.address or "local", "workers": r.workers, "max_attempts": r.max_attempts},
            t0,
        )
        self.inputs: dict[str, _Input] = {}
        self.todo: deque[Unit] = deque()
        self.joins: dict[str, Future] = {}
        self.joiner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="join")
        self.stopped = ""  # why no more units are handed out (a worker cannot reach the server)
        self.frames_done = 0
        for source in sources:
            self._plan(source)
        self.manifest.write()

    # --- planning ----------------------------------------------------------------------------------
    def _plan(self, source: InputSource) -> None:
        out = self.options.out_dir / source.name
        result = InputResult(source, "failed")
        if self.manifest.input_done_before(source.name) and is_complete(out):
            result.status, result.message = "complete", "already complete"
            self.inputs[source.name] = _Input(source, [], 0.0, result)
            self.manifest.add_input(source, [], "complete", result.message)
            return
        if not self.manifest.continues:
            clear_outputs(out)
        try:
            reader = open_reader(source, self.options.image_fps)
        except InputError as exc:
            log.error("%s", exc)
            result.message = str(exc)
            self.inputs[source.name] = _Input(source, [], 0.0, result)
            self.manifest.add_input(source, [], "failed", str(exc))
            write_input_summary(result, self.options, "", 0)
            return
        o = self.options
        units = plan(source.name, reader.frame_count, o.ray.shard_frames, o.max_frames)
        planned = min(reader.frame_count, o.max_frames) if o.max_frames else reader.frame_count
        item = _Input(source, units, reader.fps, result, planned)
        self.inputs[source.name] = item
        self.manifest.add_input(source, units, "pending")
        for unit in units:
            summary = committed(unit, o.out_dir)
            if summary is not None:
                self.manifest.unit(unit).update(state="committed", frames=summary["frames"])
                item.done_before += summary["frames"]
                item.model = summary["model"]
            else:
                self.todo.append(unit)

    # --- the pool ----------------------------------------------------------------------------------
    def _new_slot(self) -> Slot:
        actor = self.worker_cls.remote(self.options)
        return Slot(actor, actor.ready.remote())

    def run(self, bar: RunBar) -> None:
        ray, r = self.ray, self.options.ray
        self.manifest.timing("ray_connected")
        slots = [self._new_slot() for _ in range(min(r.workers, len(self.todo)))]
        for name, item in self.inputs.items():  # inputs whose units were all committed before
            if item.units and all(self.manifest.unit(u)["state"] == "committed" for u in item.units):
                self._join(name)
        try:
            self._loop(slots, bar)
        finally:
            self.manifest.timing("units_done")
            for slot in slots:
                with contextlib.suppress(Exception):  # a worker already gone has nothing to close
                    ray.get(slot.actor.close.remote(), timeout=10)
                ray.kill(slot.actor)
            futures.wait(list(self.joins.values()))
            self.joiner.shutdown(wait=True)
            self.manifest.timing("joined")
        self._show(bar, [])

    def _loop(self, slots: list[Slot], bar: RunBar) -> None:
        ray, r = self.ray, self.options.ray
        last_event = time.perf_counter()
        while (self.todo and not self.stopped) or any(s.busy for s in slots):
            for slot in slots:
                if slot.ready is None and slot.busy is None and self.todo and not self.stopped:
                    self._dispatch(slot, self.todo.popleft())
            refs = [s.ready for s in slots if s.ready is not None] + [s.busy[0] for s in slots if s.busy]
            done, _ = ray.wait(refs, num_returns=1, timeout=TICK_S)
            if done:
                last_event = time.perf_counter()
            for slot in slots:
                if slot.ready is not None and slot.ready in done:
                    try:
                        slot.info, slot.ready = ray.get(slot.ready), None
                    except ray.exceptions.RayError as exc:  # e.g. a node without this package
                        raise EngineError(f"a Ray worker could not start: {_first_line(exc)}") from exc
                    if "workers_ready" not in self.manifest.data["timing"]:
                        self.manifest.timing("workers_ready")
                elif slot.busy and slot.busy[0] in done:
                    self._finished(slots, slot)
            waited = time.perf_counter() - last_event
            if all(s.ready is not None for s in slots) and waited > WORKER_START_TIMEOUT_S:
                res = ray.cluster_resources()
                raise EngineError(
                    f"no Ray worker started in {WORKER_START_TIMEOUT_S:.0f} s: each needs "
                    f"num_cpus={r.num_cpus:g}, num_gpus={r.num_gpus:g}; the cluster has "
                    f"CPU={res.get('CPU', 0):g}, GPU={res.get('GPU', 0):g}"
                )
            self._show(bar, slots)

    def _dispatch(self, slot: Slot, unit: Unit) -> None:
        attempt = self.manifest.start(unit, slot.info)
        item = self.inputs[unit.input]
        item.began = item.began or time.perf_counter()
        source = item.source
        slot.busy = (slot.actor.run.remote(source, unit, attempt), unit, attempt)

    def _finished(self, slots: list[Slot], slot: Slot) -> None:
        ray = self.ray
        ref, unit, attempt = slot.busy  # type: ignore[misc]
        slot.busy = None
        try:
            outcome = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            who = f"worker pid {slot.info.get('pid')} on {slot.info.get('node')}"
            self._failed(unit, f"{who} died while running it ({type(exc).__name__})")
            shutil.rmtree(unit.attempt_folder(self.options.out_dir, attempt), ignore_errors=True)
            slots[slots.index(slot)] = self._new_slot()
            return
        except ray.exceptions.RayTaskError as exc:
            self._failed(unit, _first_line(exc.cause if exc.cause is not None else exc))
            return
        item = self.inputs[unit.input]
        if outcome["status"] == "complete":
            self.manifest.commit(unit, outcome["frames"])
            self.frames_done += outcome["frames"]
            item.result.latencies_ms += outcome["latencies_ms"]
            if all(self.manifest.unit(u)["state"] == "committed" for u in item.units):
                self._join(unit.input)
        elif outcome["status"] == "interrupted":  # the server is not there: no unit would do better
            self.manifest.fail(unit, outcome["message"], final=False)
            self.todo.appendleft(unit)
            if not self.stopped:
                server = self.options.client.url if self.options.backend == "triton" else "ONNX Runtime"
                why = outcome["message"].removesuffix("; " + RESUME_HINT)
                where = f"worker pid {slot.info.get('pid')} on {slot.info.get('node')}"
                self.stopped = f"{where}, server {server}: {why}"
                log.error("%s", self.stopped)
        else:
            self._failed(unit, outcome["message"])

    def _failed(self, unit: Unit, error: str) -> None:
        entry = self.manifest.unit(unit)
        final = entry["attempts_this_run"] >= self.options.ray.max_attempts
        self.manifest.fail(unit, error, final)
        log.warning(
            "unit %s, attempt %d: %s%s", unit.id, entry["attempts"], error, "" if final else "; retried"
        )
        if not final:
            self.todo.appendleft(unit)

    def _join(self, name: str) -> None:
        item = self.inputs[name]

        def timed() -> InputResult:
            try:
                return join(item.source, item.units, self.options, item.fps)
            finally:
                item.ended = time.perf_counter()

        self.joins[name] = self.joiner.submit(timed)

    def _show(self, bar: RunBar, slots: list[Slot]) -> None:
        busy = [s for s in slots if s.busy]
        running = 0
        if busy:
            refs = [s.actor.progress.remote() for s in busy]
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=TICK_S)
            for ref in ready:
                with contextlib.suppress(Exception):  # a worker that just died: its unit runs again
                    running += self.ray.get(ref)
        units = self.manifest.data["units"].values()
        done = sum(1 for u in units if u["state"] == "committed")
        failed = sum(1 for u in units if u["state"] == "failed")
        bar.show(self.frames_done + running, done, failed)

    # --- the outcome -------------------------------------------------------------------------------
    def results(self) -> list[InputResult]:
        out = []
        for name, item in self.inputs.items():
            result = item.result
            if not item.units:  # unreadable, or complete before this run
                out.append(result)
                continue
            states = [self.manifest.unit(u) for u in item.units]
            result.resumed_from = item.done_before
            result.processed = sum(s["frames"] or 0 for s in states) - item.done_before
            if item.began is not None:  # from its first unit out to its join (or the run's end)
                result.seconds = (item.ended or time.perf_counter()) - item.began
            future = self.joins.get(name)
            if future is not None and future.exception() is None:
                joined = future.result()
                result.frames, result.errors, result.first_error = (
                    joined.frames,
                    joined.errors,
                    joined.first_error,
                )
                result.status = "complete"
                result.settle()
                item.model = item.model or (committed(item.units[0], self.options.out_dir) or {}).get(
                    "model", ""
                )
            elif future is not None:
                result.message = str(future.exception())
            elif any(s["state"] == "failed" for s in states):
                bad = next(u for u, s in zip(item.units, states, strict=True) if s["state"] == "failed")
                result.message = (
                    f"unit {bad.id} failed {self.options.ray.max_attempts} times: "
                    + (self.manifest.unit(bad)["errors"][-1])
                )
            else:
                result.status = "interrupted"
                left = sum(1 for s in states if s["state"] != "committed")
                result.message = (
                    f"{self.stopped}; {left} units left in {MANIFEST}: run the same command again"
                )
            result.frames = result.frames or sum(s["frames"] or 0 for s in states)
            write_input_summary(result, self.options, item.model, len(item.units))
            self.manifest.data["inputs"][name].update(status=result.status, message=result.message)
            if result.status == "complete":
                remove_units(self.options.out_dir / name)
            out.append(result)
        return out


def run_ray(sources: list[InputSource], options: VideoOptions) -> RunReport:
    """Process every input on a Ray cluster (see the module doc); the same report as run_video."""
    t0 = time.perf_counter()
    ray = import_ray()
    owned = connect(options)
    driver = None
    try:
        driver = _Driver(ray, sources, options, t0)
        total = sum(len(i.units) for i in driver.inputs.values())
        frames = sum(max(i.planned - i.done_before, 0) for i in driver.inputs.values() if i.units)
        bar = RunBar(options.progress, frames, total)
        try:
            driver.run(bar)
        finally:
            bar.finish()
        seconds = time.perf_counter() - t0
        report = RunReport(driver.results(), options.out_dir, seconds)
        driver.manifest.write(
            state="complete" if not driver.manifest.left() else "stopped",
            exit_code=report.exit_code,
            seconds=round(seconds, 3),
            frames_processed=report.frames_processed,
            fps=round(report.fps, 3),
        )
        return report
    finally:
        if driver is not None:
            driver.manifest.write()
        if owned:
            ray.shutdown()
