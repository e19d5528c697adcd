"""``voicemesh up`` (a whole local mesh) and ``voicemesh talk`` (one spoken conversation)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import wave
from pathlib import Path

from voicemesh.client.local import DEFAULT_AVATAR, LocalMesh, LocalMeshOptions, free_port_base, port_is_free
from voicemesh.client.supervise import Supervisor, status_report
from voicemesh.metering.ledger import state_dir as default_state_dir
from voicemesh.client.session import DEFAULT_ADDRESS, DEFAULT_LLM, DEFAULT_STT, DEFAULT_TTS
from voicemesh.edges.wyoming.server import DEFAULT_PORT as WYOMING_PORT
from voicemesh.mesh import DEFAULT_PORTS
from voicemesh.settings import environ
from voicemesh.tls import CERT_ENV, LOOPBACK_HOSTS, plaintext_warning

# Chosen with bench/quiz.py --text-only (docs/models.md): SmolLM2-135M answered 26 of 34 questions right under it,
# 22 under the earlier "You are a helpful assistant. Answer the question in English with one short, factual
# sentence.", which also made it answer two in German or Spanish.
DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer the question in one short, factual sentence."
# Flags of `up` passed to every service (fair shares among API keys).
_FAIR_SHARES = ("max_streams_per_key", "idle_timeout_s", "max_stream_s")


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _on_signal_raise() -> dict:
    """Turn the first SIGINT/SIGTERM into ``_Stop``; later ones only remind that stopping is under way."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):  # noqa: ARG001
        for sig in previous:
            signal.signal(sig, lambda *_: _say("voicemesh: still stopping the services…"))
        raise _Stop(signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    return previous


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stt", default=DEFAULT_STT, metavar="DESCRIPTOR",
                        help=f"speech-to-text model, provider/model[:language] (default {DEFAULT_STT})")
    parser.add_argument("--llm", default=DEFAULT_LLM, metavar="DESCRIPTOR",
                        help=f"language model, provider/model (default {DEFAULT_LLM})")
    parser.add_argument("--tts", default=DEFAULT_TTS, metavar="DESCRIPTOR",
                        help=f"voice, provider/model[:voice] (default {DEFAULT_TTS})")
    parser.add_argument("--realtime", action="store_true",
                        help="also run the realtime service (voicemesh/cascade: these three models in one process, "
                        "on the port base +4); talk then speaks to it through the orchestrator instead of the "
                        "pipeline")


def _mesh_options(args: argparse.Namespace, *, state_dir: Path, port_base: int, host: str) -> LocalMeshOptions:
    return LocalMeshOptions(state_dir=state_dir, host=host, port_base=port_base, stt=args.stt, llm=args.llm,
                            tts=args.tts, realtime=args.realtime, avatar=getattr(args, "avatar", None),
                            preload=not getattr(args, "no_preload", False), auth=not args.no_auth,
                            wyoming_port=args.wyoming_port if getattr(args, "wyoming", False) else None,
                            console=getattr(args, "console", False), console_port=getattr(args, "console_port", None),
                            **{name: getattr(args, name) for name in _FAIR_SHARES if getattr(args, name, None) is not None})


# --- up --------------------------------------------------------------------------------------------

def _add_up(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser(
        "up", help="run the whole mesh (STT, LLM, TTS, orchestrator) on this machine",
        description="Start the STT, LLM and TTS services and the orchestrator as local processes, with the "
        "default local models loaded so the first turn is warm. Writes the mesh config and one log per "
        "service to the state directory, waits until every service reports SERVING, prints the addresses, "
        "and runs until Ctrl-C or SIGTERM, which stops every service cleanly. A service that exits is "
        "restarted with a backoff (1 s, doubling while it keeps dying, at most 30 s); up stops by itself only "
        "when a service cannot start at all (it exited 3 times in a row before reporting SERVING). "
        "`voicemesh status` shows each service's state, restarts and uptime. Ports: the orchestrator on "
        "--port-base, stt +1, llm +2, tts +3 (realtime +4 with --realtime, avatar +5 with --avatar), the gateway "
        "with the browser console +6 (unless --no-console).",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the services listen on (default 127.0.0.1; "
                    "0.0.0.0 for all interfaces)")
    up.add_argument("--port-base", type=int, default=DEFAULT_PORTS["orchestrator"],
                    help=f"orchestrator port; the model services take the next three (default "
                    f"{DEFAULT_PORTS['orchestrator']})")
    up.add_argument("--state-dir", type=Path, default=None,
                    help="where the mesh config and logs go (default $VOICEMESH_STATE_DIR or ~/.voicemesh)")
    _add_model_flags(up)
    up.add_argument("--avatar", nargs="?", const=DEFAULT_AVATAR, default=None, metavar="DESCRIPTOR",
                    help=f"also run the avatar service (lip-synced video of the agent's voice) on the port base +5, "
                    f"preloading this avatar (default {DEFAULT_AVATAR})")
    up.add_argument("--no-preload", action="store_true", help="do not load the models before reporting SERVING")
    up.add_argument("--no-auth", action="store_true",
                    help="serve without API keys (usage is still recorded in the state directory's ledger.db); "
                    "by default every RPC needs the key written to <state-dir>/api_key, which talk and the SDK "
                    "send")
    up.add_argument("--wyoming", action="store_true",
                    help="also run a Wyoming server over the STT and TTS services, for Home Assistant "
                    "(voicemesh serve wyoming; it calls the mesh with the local key)")
    up.add_argument("--wyoming-port", type=int, default=WYOMING_PORT,
                    help=f"port of the Wyoming server (default {WYOMING_PORT})")
    up.add_argument("--console", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the HTTP gateway, with the browser console at http://<host>:<console-port>/console "
                    "and the OpenAI-compatible API under /v1 (default on; --no-console leaves it out)")
    up.add_argument("--console-port", type=int, default=None,
                    help="port of the gateway and its console (default: the port base +6)")
    up.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for SERVING (default 300)")
    up.add_argument("--max-streams-per-key", type=int, default=16, metavar="N",
                    help="streams one API key may hold open on each service (default 16, about eight voice "
                    "sessions; 0: no limit)")
    up.add_argument("--idle-timeout-s", type=float, default=120.0, metavar="S",
                    help="a stream with no message either way for S seconds ends with DEADLINE_EXCEEDED "
                    "(default 120; 0: never)")
    up.add_argument("--max-stream-s", type=float, default=0.0, metavar="S",
                    help="longest a stream may last on any service, in seconds (default 0: no limit)")
    up.set_defaults(handler=_up)


def _up(args: argparse.Namespace) -> int:
    state_dir = (args.state_dir or default_state_dir()).expanduser()
    mesh = LocalMesh(_mesh_options(args, state_dir=state_dir, port_base=args.port_base, host=args.host))
    previous = _on_signal_raise()
    try:
        warning = plaintext_warning(args.host, bool(environ(CERT_ENV)))
        if warning:
            _say(f"voicemesh up: WARNING: {warning}")
        edges = "".join(f" and {edge}" for edge, on in (("a Wyoming server", mesh.wyoming_uri),
                                                          ("the gateway", mesh.console_url)) if on)
        _say(f"voicemesh up: starting {', '.join(mesh.services)}, the orchestrator{edges} (logs in {mesh.log_dir})")
        mesh.start()
        mesh.wait_serving(args.timeout, on_ready=lambda name, s: _say(
            f"  {name:<12} {mesh.address(name):<22} SERVING after {s:.1f} s"))
        print(f"VoiceMesh is up: orchestrator at {mesh.orchestrator_address} "
              f"({', '.join(f'{name} {mesh.address(name)}' for name in mesh.services)})", flush=True)
        if mesh.wyoming_uri:
            print(f"Wyoming (Home Assistant) at {mesh.wyoming_uri}", flush=True)
        if mesh.console_url:
            print(f"Console at {mesh.console_url} (OpenAI-compatible API at "
                  f"{mesh.console_url.removesuffix('/console')}/v1)", flush=True)
        keys = (f"API key in {mesh.key_path} (talk and the SDK read it; or set VOICEMESH_API_KEY; paste it "
                "into the console)"
                if mesh.api_key else "no API keys (--no-auth)")
        _say(f"mesh config: {mesh.mesh_path}; usage ledger: {mesh.ledger_url}; {keys}\n"
             f"try: voicemesh talk --address {mesh.orchestrator_address}\nCtrl-C stops everything.")
        supervisor = Supervisor(mesh, say=_say)
        while True:
            reason = supervisor.step()
            if reason is not None:
                _say(f"voicemesh up: {reason}; stopping the mesh")
                return 1
            time.sleep(0.5)
    except _Stop as stop:
        _say(f"voicemesh up: {stop}: stopping…")
        return 0
    except (RuntimeError, TimeoutError) as exc:
        _say(f"voicemesh up: {exc}")
        return 1
    finally:
        codes = mesh.stop()
        if codes:
            _say("voicemesh up: stopped " + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- status ----------------------------------------------------------------------------------------

def _add_status(commands: argparse._SubParsersAction) -> None:
    status = commands.add_parser(
        "status", help="show the services of the running `voicemesh up`: state, health, restarts, uptime",
        description="Read the state directory's up.json (written by `voicemesh up`) and check each service's "
        "health: prints one line per service with its address, pid, supervisor state (starting, serving, "
        "restarting, failed), health (SERVING, NOT_SERVING or no answer), restarts and uptime. Exits 0 only "
        "when every service is SERVING.",
    )
    status.add_argument("--state-dir", type=Path, default=None,
                        help="state directory of the mesh (default $VOICEMESH_STATE_DIR or ~/.voicemesh)")
    status.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each health check")
    status.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    serving, lines = status_report((args.state_dir or default_state_dir()).expanduser(), args.timeout)
    print("\n".join(lines))
    return 0 if serving else 1


# --- talk ------------------------------------------------------------------------------------------

def _add_talk(commands: argparse._SubParsersAction) -> None:
    talk = commands.add_parser(
        "talk", help="have one spoken conversation with the agent (from a WAV file or a text)",
        description="Send a spoken question to the agent and save its spoken answer. The WAV is streamed in "
        "real time in 20 ms chunks, followed by silence so the end of the turn is detected; the live "
        "transcript, the agent's words and each turn's latency are printed. Without --in, the question "
        "shipped with VoiceMesh is used (\"What is the capital of France?\"). If no mesh answers at "
        "--address, a local one is started for the duration of the command (as `voicemesh up` would).",
    )
    source = talk.add_mutually_exclusive_group()
    source.add_argument("--in", dest="input", type=Path, metavar="WAV",
                        help="16-bit PCM WAV with the user's speech (default: the shipped sample question)")
    source.add_argument("--text", help="ask by text instead of speech")
    talk.add_argument("--out", type=Path, default=Path("answer.wav"), metavar="WAV|MP4",
                      help="where to write the agent's audio (default answer.wav); with --avatar, a name ending "
                      "in .mp4 gets the audio and the avatar's video")
    talk.add_argument("--avatar", default=None, metavar="DESCRIPTOR",
                      help="show the agent with this avatar (for example local/ada); a local mesh this command "
                      "starts runs the avatar service too")
    talk.add_argument("--avatar-size", type=int, default=256, help="avatar frame width and height (default 256)")
    talk.add_argument("--avatar-fps", type=int, default=25, help="avatar frames per second (default 25)")
    talk.add_argument("--address", default=DEFAULT_ADDRESS, help=f"orchestrator address (default {DEFAULT_ADDRESS})")
    _add_model_flags(talk)
    talk.add_argument("--instructions", default=DEFAULT_INSTRUCTIONS, help="the agent's system prompt")
    talk.add_argument("--api-key", default=None,
                      help="API key sent as a bearer token (default $VOICEMESH_API_KEY, else the key file of "
                      "`voicemesh up` in $VOICEMESH_STATE_DIR or ~/.voicemesh)")
    talk.add_argument("--no-auth", action="store_true", help="a mesh this command starts serves without API keys")
    talk.add_argument("--no-start", action="store_true", help="fail instead of starting a local mesh")
    talk.add_argument("--state-dir", type=Path, default=None,
                      help="state directory of a mesh this command starts (default ~/.voicemesh/talk)")
    talk.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer (default 120)")
    talk.add_argument("--stall-timeout-ms", type=int, default=20000,
                      help="a model with no first result within this counts as failed and the next in a fallback "
                      "list is tried (default 20000: generous, for busy machines)")
    talk.set_defaults(handler=_talk)


def _start_mesh_for_talk(args: argparse.Namespace) -> LocalMesh:
    host, _, port_text = args.address.rpartition(":")
    if host not in LOOPBACK_HOSTS or args.no_start:
        raise RuntimeError(f"no VoiceMesh orchestrator answers at {args.address}; start one with `voicemesh up`")
    port = int(port_text)
    span = 6 if args.avatar else 5 if args.realtime else 4
    if not all(port_is_free("127.0.0.1", port + k) for k in range(span)):
        port = free_port_base()
    state_dir = (args.state_dir or default_state_dir() / "talk").expanduser()
    mesh = LocalMesh(_mesh_options(args, state_dir=state_dir, port_base=port, host="127.0.0.1"))
    _say(f"voicemesh talk: no mesh answers at {args.address}; starting a local one on ports {port}-{port + span - 1} "
         f"(logs in {mesh.log_dir}); the first start loads the models")
    mesh.start()
    try:
        mesh.wait_serving(300.0, on_ready=lambda name, s: _say(f"  {name:<12} SERVING after {s:.1f} s"))
    except BaseException:
        mesh.stop()
        raise
    return mesh


def _wait_serving(address: str, timeout: float) -> str | None:
    """Poll health until SERVING; raise TimeoutError if it stays up but never serves."""
    from voicemesh.process import health

    deadline = time.monotonic() + timeout
    while True:
        status = health(address, timeout=2.0)
        if status in (None, "SERVING"):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the orchestrator at {address} is still {status} after {timeout:.0f} s")
        time.sleep(0.5)


def _talk(args: argparse.Namespace) -> int:
    from voicemesh.audio import MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ, convert, read_wav, write_wav
    from voicemesh.errors import VoiceMeshError
    from voicemesh.client.session import AgentSessionError
    from voicemesh.process import health
    from voicemesh.samples import QUESTION_TEXT, question_path

    pcm, rate = b"", 16000
    if args.text is None:
        path = args.input or question_path()
        if args.input is None:
            _say(f"voicemesh talk: asking the sample question ({QUESTION_TEXT!r}, {path})")
        try:
            pcm, rate = read_wav(path)
        except (OSError, EOFError, wave.Error, VoiceMeshError) as exc:
            _say(f"voicemesh talk: cannot use {path}: {exc}")
            return 2
        if not pcm:
            _say(f"voicemesh talk: {path} holds no audio")
            return 2
        if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
            pcm, rate = convert(pcm, rate, 16000), 16000
    mesh = None
    previous = _on_signal_raise()
    try:
        address = args.address
        status = health(address, timeout=2.0)
        if status is not None and status != "SERVING":
            _say(f"voicemesh talk: the orchestrator at {address} is {status}; waiting for it to be SERVING")
            status = _wait_serving(address, 180.0)
        if status is None:
            mesh = _start_mesh_for_talk(args)
            address = mesh.orchestrator_address
            args.api_key = args.api_key or mesh.api_key
        result = asyncio.run(_converse(args, address, pcm, rate))
    except _Stop as stop:
        _say(f"voicemesh talk: {stop}: stopped")
        return 130
    except AgentSessionError as exc:
        _say(f"voicemesh talk: the session failed: {exc}")
        return 1
    except (RuntimeError, TimeoutError, ValueError) as exc:
        _say(f"voicemesh talk: {exc}")
        return 1
    finally:
        if mesh is not None:
            _say("voicemesh talk: stopping the local mesh")
            mesh.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not result.audio:
        _say("voicemesh talk: the agent sent no audio" +
             (f" (errors: {'; '.join(f'{e.code}: {e.message}' for e in result.errors)})" if result.errors else ""))
        return 1
    seconds = len(result.audio) / 2 / result.sample_rate
    if args.avatar and args.out.suffix.lower() == ".mp4":
        from voicemesh.client.video import write_mp4

        try:
            write_mp4(args.out, bytes(result.audio), result.sample_rate, result.frames, args.avatar_fps)
        except ValueError as exc:
            _say(f"voicemesh talk: cannot write {args.out}: {exc}")
            return 1
        _say(f"voicemesh talk: wrote {args.out} ({seconds:.1f} s of agent audio and avatar video)")
        return 0
    write_wav(args.out, bytes(result.audio), result.sample_rate)
    _say(f"voicemesh talk: wrote {args.out} ({seconds:.1f} s of agent audio at {result.sample_rate} Hz)")
    return 0


async def _converse(args: argparse.Namespace, address: str, pcm: bytes, rate: int):
    from voicemesh.client.session import AgentSession, Avatar
    from voicemesh.client.talk import Conversation, Printer

    session = AgentSession(stt=args.stt, llm=args.llm, tts=args.tts, instructions=args.instructions,
                           realtime="voicemesh/cascade" if args.realtime else None,
                           address=address, api_key=args.api_key, input_sample_rate=rate,
                           first_result_timeout_ms=args.stall_timeout_ms,
                           avatar=Avatar(args.avatar, args.avatar_size, args.avatar_size, args.avatar_fps, "i420")
                           if args.avatar else None)
    async with session:
        _say(f"voicemesh talk: session {session.session_id or '(no id)'} at {address}")
        conversation = Conversation(session, printer=Printer(sys.stdout), timeout_s=args.timeout)
        sender = conversation.send_text(args.text) if args.text is not None else conversation.send_audio(pcm, rate)
        return await conversation.run(sender)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``up``, ``status`` and ``talk`` to the ``voicemesh`` command line."""
    _add_up(commands)
    _add_status(commands)
    _add_talk(commands)
