"""Generate the API reference (docs/api.md) from the proto comments.

Run ``python -m voicemesh.protodoc`` after editing a proto; the output is
committed, and ``tests/foundation/test_contracts.py`` fails when it drifts.
protoc keeps every comment in the descriptor set's SourceCodeInfo; this walks
it and writes one section per file: services with their RPCs, then messages
with a table of fields, then enums.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from voicemesh.codegen import PROTO_ROOT, ROOT, proto_files

OUTPUT = ROOT / "docs" / "api.md"

# Field numbers inside FileDescriptorProto / DescriptorProto / ServiceDescriptorProto (descriptor.proto).
_MESSAGE, _ENUM, _SERVICE = 4, 5, 6
_FIELD, _NESTED, _NESTED_ENUM = 2, 3, 4
_METHOD = 2
_ENUM_VALUE = 2

_TYPES = {v: k[len("TYPE_"):].lower() for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()}


def descriptor_set(proto_root: Path = PROTO_ROOT) -> descriptor_pb2.FileDescriptorSet:
    """The protos of voicemesh/v1 compiled with their comments."""
    from grpc_tools import protoc

    include = Path(protoc.__file__).resolve().parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{include}", f"--descriptor_set_out={out}",
                "--include_source_info", *(str(f.relative_to(proto_root)) for f in proto_files(proto_root))]
        if protoc.main(args) != 0:
            raise RuntimeError("protoc failed: " + " ".join(args))
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Comments:
    def __init__(self, file: descriptor_pb2.FileDescriptorProto):
        self._by_path = {tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location}

    def __call__(self, *path: int) -> str:
        return " ".join(self._by_path.get(path, "").split())


def _type_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    name = field.type_name.rsplit(".", 1)[-1] if field.type_name else _TYPES[field.type]
    if field.type_name:
        name = f"[{name}](#{name.lower()})"
    if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {name}"
    return name


def _message(lines: list[str], message, comments: _Comments, path: tuple[int, ...], prefix: str = "") -> None:
    name = prefix + message.name
    if message.options.map_entry:
        return
    lines += [f"### {name}", "", comments(*path) or "", ""]
    if message.field:
        lines += ["| field | type | description |", "|---|---|---|"]
        for i, field in enumerate(message.field):
            oneof = ""
            if field.HasField("oneof_index") and not field.proto3_optional:
                oneof = f" (oneof `{message.oneof_decl[field.oneof_index].name}`)"
            description = comments(*path, _FIELD, i).replace("|", "\\|")
            lines.append(f"| `{field.name}` | {_type_name(field)} | {description}{oneof} |")
        lines.append("")
    for i, nested in enumerate(message.nested_type):
        _message(lines, nested, comments, (*path, _NESTED, i), prefix=f"{name}.")
    for i, enum in enumerate(message.enum_type):
        _enum(lines, enum, comments, (*path, _NESTED_ENUM, i), prefix=f"{name}.")


def _enum(lines: list[str], enum, comments: _Comments, path: tuple[int, ...], prefix: str = "") -> None:
    lines += [f"### {prefix}{enum.name}", "", comments(*path), "", "| value | number | description |", "|---|---|---|"]
    for i, value in enumerate(enum.value):
        lines.append(f"| `{value.name}` | {value.number} | {comments(*path, _ENUM_VALUE, i)} |")
    lines.append("")


def render(files: descriptor_pb2.FileDescriptorSet) -> str:
    """The Markdown reference of the project's protos."""
    lines = ["# VoiceMesh API reference", "",
             "Generated from the comments in `protos/voicemesh/v1` by `python -m voicemesh.protodoc`; "
             "do not edit by hand. Package `voicemesh.v1`. Every streaming RPC is config-first; see the "
             "README and `docs/clients.md` for how to call the services.", ""]
    ours = [f for f in files.file if f.name.startswith("voicemesh/")]
    lines += [f"- [{f.name}](#{f.name.replace('/', '').replace('.', '')})" for f in ours]
    lines.append("")
    for file in ours:
        comments = _Comments(file)
        lines += [f"## {file.name}", "", comments(2), ""]
        for i, service in enumerate(file.service):
            lines += [f"### service {service.name}", "", comments(_SERVICE, i), ""]
            lines += ["| RPC | request | response | description |", "|---|---|---|---|"]
            for j, method in enumerate(service.method):
                request = ("stream " if method.client_streaming else "") + method.input_type.rsplit(".", 1)[-1]
                response = ("stream " if method.server_streaming else "") + method.output_type.rsplit(".", 1)[-1]
                lines.append(f"| `{method.name}` | {request} | {response} | {comments(_SERVICE, i, _METHOD, j)} |")
            lines.append("")
        for i, message in enumerate(file.message_type):
            _message(lines, message, comments, (_MESSAGE, i))
        for i, enum in enumerate(file.enum_type):
            _enum(lines, enum, comments, (_ENUM, i))
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is not up to date")
    args = parser.parse_args(argv)
    text = render(descriptor_set())
    if args.check:
        stale = not OUTPUT.exists() or OUTPUT.read_text() != text
        if stale:
            print(f"stale: {OUTPUT.relative_to(ROOT)}")
        return 1 if stale else 0
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
