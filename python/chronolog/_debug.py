"""``chronolog debug``: pdb's stepping over a recorded run, forward and back.

Every stop is an event of the trace; moving is a seek in it (see the native
``Timeline``), so nothing is re-executed and going backwards costs the same
as going forwards. Commands are named as in pdb (``step``, ``next``,
``continue``, ``break``, ``print``, ``where``, ``list``, ``locals``,
``quit``) plus gdb's reverse execution (``reverse-step``, ``reverse-next``,
``reverse-continue``) and ``goto SEQ``. Commands come from the prompt, or
from stdin when it is not a terminal, so sessions can be scripted.
"""

from __future__ import annotations

from typing import Any, TextIO

from chronolog._native import QueryError
from chronolog._trace import Trace, quote

Event = dict[str, Any]

STEP_KINDS = ["call", "line", "return"]
HELP = """\
commands (as in pdb; reverse ones as in gdb):
  s(tep)              next event of this thread, into calls
  n(ext)              next line of this frame or its caller (over calls)
  c(ont(inue))        forward to the next breakpoint
  rs, reverse-step    previous event of this thread, into calls
  rn, reverse-next    previous line of this frame or its caller
  rc, reverse-continue  back to the previous breakpoint
  b(reak) [FUNCTION | FILE:LINE]   set a breakpoint (no argument: list them)
  cl(ear) [N]         delete breakpoint N (no argument: all)
  goto SEQ            jump to event SEQ
  p(rint) NAME        a variable's recorded value here
  locals              every local of the current frame
  w(here), bt         the stack, outermost first
  l(ist)              source around the current line
  q(uit)              leave"""


class Breakpoint:
    def __init__(self, spec: str, codes: list[int], lines: list[tuple[int, int]]) -> None:
        self.spec = spec
        self.codes = codes  # function breakpoint: stop at the first line of a call
        self.lines = lines  # (code, line) positions

    def next_hit(self, trace: Trace, seq: int, forward: bool) -> Event | None:
        if self.lines:
            return trace._seek(seq, forward, kinds=["line"], lines=self.lines)
        # A function: the first line of each of its activations.
        start = seq
        while True:
            call = trace._seek(start, forward, kinds=["call"], codes=self.codes)
            if call is None:
                return None
            first = trace._seek(call["seq"], True, kinds=["line"], frame=call["frame_id"])
            if first is not None and (first["seq"] > seq if forward else first["seq"] < seq):
                return first
            start = call["seq"]


class Debugger:
    def __init__(self, trace: Trace, stdin: TextIO, stdout: TextIO) -> None:
        self.trace = trace
        self.stdin = stdin
        self.out = stdout
        self.breakpoints: dict[int, Breakpoint] = {}
        self.next_number = 1
        self.sources: dict[str, dict[int, str]] = {}
        bounds = trace._bounds()
        self.at: Event | None = None
        if bounds is not None:
            # As pdb: stop before the first line runs.
            first = trace._event(bounds[0])
            if first is not None and first["kind"] == "line":
                self.at = first
            else:
                self.at = trace._seek(bounds[0], True, kinds=["line"]) or first

    # -- output -------------------------------------------------------------

    def say(self, text: str) -> None:
        self.out.write(text + "\n")

    def source(self, file: str) -> dict[int, str]:
        if file not in self.sources:
            rows = self.trace.sql(
                f"SELECT line, text FROM source WHERE file = {quote(file)}"
            ).to_pylist()
            self.sources[file] = {row["line"]: row["text"] for row in rows}
        return self.sources[file]

    def show(self) -> None:
        at = self.at
        if at is None:
            self.say("the trace holds no events")
            return
        if at["kind"] == "call":
            self.say("--Call--")
        elif at["kind"] in ("return", "yield"):
            self.say(f"--Return-- {at['arg'] if at['arg'] is not None else 'None'}")
        elif at["kind"] in ("raise", "reraise", "handled", "unwind"):
            self.say(f"--Exception ({at['kind']})-- {at['arg_type']}: {at['arg']}")
        self.say(
            f"> {at['file']}({at['line']}){at['function']}()"
            f"   [seq {at['seq']}, thread {at['thread_id']}]"
        )
        text = self.source(at["file"]).get(at["line"])
        if text is not None:
            self.say(f"-> {text.strip()}")

    # -- moving -------------------------------------------------------------

    def move(self, found: Event | None, edge: str) -> None:
        if found is None:
            self.say(f"-- {edge} of the recorded run --")
        else:
            self.at = found
        self.show()

    def step(self, forward: bool) -> None:
        assert self.at is not None
        found = self.trace._seek(
            self.at["seq"], forward, thread=self.at["thread_id"], kinds=STEP_KINDS
        )
        self.move(found, "end" if forward else "start")

    def next(self, forward: bool) -> None:
        at = self.at
        assert at is not None
        kinds = ["line", "return"] if forward else ["line", "call"]
        found = self.trace._seek(
            at["seq"], forward, thread=at["thread_id"], kinds=kinds, max_depth=at["depth"]
        )
        self.move(found, "end" if forward else "start")

    def cont(self, forward: bool) -> None:
        assert self.at is not None
        hits = [
            bp.next_hit(self.trace, self.at["seq"], forward) for bp in self.breakpoints.values()
        ]
        found = [h for h in hits if h is not None]
        if not found:
            bounds = self.trace._bounds()
            assert bounds is not None
            edge = self.trace._event(bounds[1] if forward else bounds[0])
            if edge is not None:
                self.at = edge
            self.say(f"-- {'end' if forward else 'start'} of the recorded run --")
            self.show()
            return
        self.at = (
            min(found, key=lambda e: e["seq"]) if forward else max(found, key=lambda e: e["seq"])
        )
        number = next(n for n, bp in self.breakpoints.items() if self.hits(bp, self.at))
        self.say(f"Breakpoint {number}")
        self.show()

    def hits(self, bp: Breakpoint, event: Event) -> bool:
        if bp.lines:
            return (event["code_id"], event["line"]) in bp.lines
        return event["code_id"] in bp.codes

    # -- commands -----------------------------------------------------------

    def add_break(self, spec: str) -> None:
        if not spec:
            if not self.breakpoints:
                self.say("no breakpoints")
            for number, bp in self.breakpoints.items():
                self.say(f"{number}  {bp.spec}")
            return
        file, _, line = spec.rpartition(":")
        if file and line.isdigit():
            codes = self.trace._codes_in_file(file)
            if not codes:
                self.say(f"*** unknown file '{file}'")
                return
            bp = Breakpoint(spec, [], [(code, int(line)) for code in codes])
        else:
            codes = self.trace._codes_named(spec)
            if not codes:
                self.say(f"*** unknown function '{spec}'")
                return
            bp = Breakpoint(spec, codes, [])
        self.breakpoints[self.next_number] = bp
        self.say(f"Breakpoint {self.next_number} at {spec}")
        self.next_number += 1

    def clear(self, arg: str) -> None:
        if not arg:
            self.breakpoints.clear()
            self.say("deleted all breakpoints")
        elif arg.isdigit() and int(arg) in self.breakpoints:
            del self.breakpoints[int(arg)]
            self.say(f"deleted breakpoint {arg}")
        else:
            self.say(f"*** no breakpoint {arg}")

    def stack(self) -> list[dict[str, Any]]:
        assert self.at is not None
        return self.trace.state_at(self.at["seq"])

    def print_name(self, name: str) -> None:
        for frame in reversed(self.stack()):
            if name in frame["locals"]:
                self.say(frame["locals"][name])
                return
        self.say(f"*** NameError: name '{name}' has no recorded value here")

    def locals(self) -> None:
        frames = self.stack()
        if frames:
            for name, value in frames[-1]["locals"].items():
                self.say(f"{name} = {value}")

    def where(self) -> None:
        frames = self.stack()
        for index, frame in enumerate(frames):
            marker = ">" if index == len(frames) - 1 else " "
            self.say(f"{marker} {frame['file']}({frame['line']}){frame['function']}()")

    def list_source(self) -> None:
        at = self.at
        assert at is not None
        lines = self.source(at["file"])
        for number in range(max(1, at["line"] - 5), at["line"] + 6):
            if number in lines:
                marker = "->" if number == at["line"] else "  "
                self.say(f"{number:4} {marker} {lines[number]}")

    def goto(self, arg: str) -> None:
        if not arg.isdigit():
            self.say("*** goto needs an event number (seq)")
            return
        found = self.trace._event(int(arg))
        if found is None:
            self.say(f"*** no event {arg} in the trace")
            return
        self.at = found
        self.show()

    def execute(self, line: str) -> bool:
        """Runs one command; False when the session ends."""
        command, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        actions = {
            ("s", "step"): lambda: self.step(True),
            ("n", "next"): lambda: self.next(True),
            ("c", "cont", "continue"): lambda: self.cont(True),
            ("rs", "reverse-step"): lambda: self.step(False),
            ("rn", "reverse-next"): lambda: self.next(False),
            ("rc", "reverse-continue"): lambda: self.cont(False),
            ("b", "break"): lambda: self.add_break(arg),
            ("cl", "clear"): lambda: self.clear(arg),
            ("p", "print"): lambda: self.print_name(arg),
            ("locals",): self.locals,
            ("w", "where", "bt"): self.where,
            ("l", "list"): self.list_source,
            ("goto",): lambda: self.goto(arg),
            ("h", "help"): lambda: self.say(HELP),
        }
        if command in ("q", "quit", "exit"):
            return False
        for names, action in actions.items():
            if command in names:
                if self.at is None and command not in ("h", "help"):
                    self.say("the trace holds no events")
                else:
                    action()
                return True
        self.say(f"*** unknown command '{command}' (help lists them)")
        return True

    def run(self) -> int:
        interactive = self.stdin.isatty()
        self.show()
        last = ""
        while True:
            if interactive:
                try:
                    line = input("(chronolog) ")
                except EOFError:
                    self.say("")
                    return 0
            else:
                line = self.stdin.readline()
                if not line:
                    return 0
            if not line.strip():
                if not last:
                    continue
                line = last  # as pdb: an empty line repeats the last command
            last = line
            try:
                if not self.execute(line):
                    return 0
            except QueryError as error:
                self.say(f"*** {error}")
