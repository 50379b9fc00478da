# Image for the Python parts (exporter and admin); Prometheus and Grafana use their official images.
FROM python:3.12-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY admin ./admin
COPY wordslab_dashboard ./wordslab_dashboard
RUN pip install --no-cache-dir .

# The exporter reads the host (network_mode: host, pid: host); the admin writes the store.
EXPOSE 9877 9878
CMD ["wordslab-exporter", "--listen-address", "127.0.0.1:9877"]
