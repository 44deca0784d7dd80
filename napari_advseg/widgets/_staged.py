"""Scheduling the Explore tab's slice renders in two stages (no layers here).

Stage one (:meth:`~._tasks.SliceRenderer.render_fields`: fields, adversarial
image, warped reference) and stage two (:meth:`~._tasks.SliceRenderer.segment`:
the target's segmentation and the Dice table) each run in a worker of the
widget's job registry, one job per stage at a time, so that the image follows
the slider while the slow segmentation catches up:

- a request made while stage one runs replaces the pending one (latest wins);
- a shown stage-one result is segmented next, unless a newer request already
  waits (its own segmentation follows it), and only from the next pass of the
  event loop, so that the target's pass does not slow the repaint of stage
  one; a result shown while stage two runs replaces the one waiting;
- a segmentation is handed on only while its own image is on screen, so
  that none is ever shown over the image of another code.

Both stages may run at once (stage two reads only its result's arrays and
the target). Results reach the tab through its callbacks, on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QTimer

from napari_advseg.widgets._tasks import SliceRenderer, SliceRequest, SliceResult

DEBOUNCE_MS = 0
"""Requests wait this long first: 0 merges the changes of one event-loop pass (e.g. every slider of
"Random sample") without delaying a render."""


class StagedRenders:
    """The two render stages of the Explore tab.

    Parameters
    ----------
    owner : the dock widget (``session``, ``jobs``, ``closing``, ``notify_error``)
    parent : QObject owning the timer
    show_fields, show_segmentation : callables taking a SliceResult (main thread)
    on_screen : callable, whether a SliceResult's image is the one shown
    """

    def __init__(self, owner, parent, show_fields: Callable[[SliceResult], None],
                 show_segmentation: Callable[[SliceResult], None], on_screen: Callable[[SliceResult], bool]):
        self.owner = owner
        self.show_fields = show_fields
        self.show_segmentation = show_segmentation
        self.on_screen = on_screen
        self.renderer: SliceRenderer | None = None
        self.pending: SliceRequest | None = None
        self.pending_segment: SliceResult | None = None
        self.busy = False
        self.segmenting = False
        self.timer = QTimer(parent)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self._launch)
        self.segment_timer = QTimer(parent)
        self.segment_timer.setSingleShot(True)
        self.segment_timer.setInterval(0)
        self.segment_timer.timeout.connect(self._launch_segment)

    def submit(self, request: SliceRequest) -> None:
        """Render ``request`` next (it replaces any pending request)."""
        self.pending = request
        self.timer.start()

    def stop(self) -> None:
        """Drop whatever is pending (running jobs are the job registry's to stop)."""
        self.timer.stop()
        self.segment_timer.stop()
        self.pending = self.pending_segment = None

    def idle(self) -> bool:
        """Whether both stages are done: nothing running and nothing pending."""
        return not (self.busy or self.segmenting or self.pending is not None or self.pending_segment is not None
                    or self.timer.isActive() or self.segment_timer.isActive())

    def render_now(self, request: SliceRequest) -> SliceResult:
        """Both stages of ``request`` on this thread; a pending request is dropped."""
        session = self.owner.session
        self.pending = None
        if self.busy:  # the stage-one worker owns self.renderer right now
            return SliceRenderer(session).render(request)
        return self._current_renderer().render(request)

    def _current_renderer(self) -> SliceRenderer:
        session = self.owner.session
        if self.renderer is None or self.renderer.revision != session.revision:
            self.renderer = SliceRenderer(session)
        return self.renderer

    # ------------------------------------------------------------------ stage one
    def _launch(self) -> None:
        if self.busy or self.pending is None or self.owner.closing:
            return
        if not self.owner.session.can_explore():
            self.pending = None
            return
        request, self.pending = self.pending, None
        try:
            renderer = self._current_renderer()
            self.busy = True
            self.owner.jobs.function_job("render", renderer.render_fields, request, quick=True, connect={
                "returned": self.show_fields, "errored": self.owner.notify_error, "finished": self._fields_done})
        except Exception as exc:
            self.busy = False
            self.owner.notify_error(exc)

    def _fields_done(self) -> None:
        self.busy = False
        if self.pending is not None and not self.owner.closing:
            self._launch()

    # ------------------------------------------------------------------ stage two
    def queue_segment(self, result: SliceResult) -> None:
        """Segment a shown stage-one result next (it replaces one still waiting)."""
        if self.pending is not None:
            return  # a newer request waits: its own segmentation follows it
        self.pending_segment = result
        self.segment_timer.start()

    def _launch_segment(self) -> None:
        if self.segmenting or self.pending_segment is None or self.owner.closing:
            return
        result, self.pending_segment = self.pending_segment, None
        renderer = self.renderer
        if not self.on_screen(result) or renderer is None or renderer.revision != result.request.revision:
            return
        try:
            self.segmenting = True
            self.owner.jobs.function_job("segment", renderer.segment, result, quick=True, connect={
                "returned": self.show_segmentation, "errored": self.owner.notify_error,
                "finished": self._segment_done})
        except Exception as exc:
            self.segmenting = False
            self.owner.notify_error(exc)

    def _segment_done(self) -> None:
        self.segmenting = False
        if self.pending_segment is not None and not self.owner.closing:
            self._launch_segment()
