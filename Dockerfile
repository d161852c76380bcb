# syntax=docker/dockerfile:1
# layerenv in a container: a `base` stage holding one verified torch base, and an `app` stage
# layering a project on it. See docs/docker.md.
#
#   docker build -t hello .                                   # TORCH_VARIANT=cu128, APP_DIR=examples/hello
#   docker build --build-arg TORCH_VARIANT=cu130 -t hello .   # driver >= 580 hosts
#   docker run --rm --gpus all hello                          # doctor checks the host, then python main.py

FROM python:3.12-slim AS base
# No GPU is visible while building, so the variant cannot be detected: it is a build argument.
# cu128 by default: CUDA 12.8 runs on NVIDIA drivers >= 525.60.13 (Blackwell GPUs: >= 570) and its
# wheels carry kernels from Volta/Turing to Blackwell (sm_70/75 .. sm_120), the widest fit among
# current builds; cu130/cu132 need driver >= 580. Use `cpu` for CPU-only hosts, `rocm6.4` for AMD.
ARG TORCH_VARIANT=cu128
ENV LAYERENV_HOME=/opt/layerenv \
    LAYERENV_VARIANT=${TORCH_VARIANT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY . /src
RUN pip install /src && rm -rf /src
# Detection sees no GPU here; the forced variant is built and verified (version, CUDA/HIP, arch list)
# without a kernel run. LAYERENV_VARIANT above keeps `project`, `run` and `doctor` on the same base.
RUN layerenv base --variant "$TORCH_VARIANT"

FROM base AS app
ARG APP_DIR=examples/hello
COPY ${APP_DIR} /app
RUN layerenv project /app
COPY docker/entrypoint.sh /usr/local/bin/layerenv-entrypoint
WORKDIR /app
ENTRYPOINT ["layerenv-entrypoint"]
CMD ["python", "main.py"]
