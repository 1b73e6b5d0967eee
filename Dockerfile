FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY telehealth ./telehealth
COPY gateway ./gateway
COPY processor ./processor
COPY dashboard_api ./dashboard_api
COPY simulators ./simulators
COPY bench ./bench
COPY launcher ./launcher
RUN pip install --no-cache-dir . && useradd --create-home telehealth \
    && mkdir -p /var/lib/telehealth && chown telehealth /var/lib/telehealth
USER telehealth
ENTRYPOINT ["telehealth"]
