# The control plane image (docker-compose.yml, deploy/kubernetes). Agents embed the
# `fusebox-resilience` package (`fusebox.agent`) in their own images instead.
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY controlplane ./controlplane
COPY protos ./protos
# fusebox/ maps agent/, controlplane/ and protos/fusebox/v1 into the one package (links).
COPY fusebox ./fusebox
RUN pip install --no-cache-dir '.[server]'
# Runs as a non-root user with a fixed UID/GID, which deploy/kubernetes names
# (runAsUser/runAsGroup 10001, read-only root filesystem). Its home is where the
# embedded store and the agents' policy cache go by default; under Kubernetes
# the manifests mount volumes there instead.
RUN groupadd --gid 10001 fusebox \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/fusebox \
      --shell /usr/sbin/nologin fusebox
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/fusebox
EXPOSE 50051
ENTRYPOINT ["fusebox"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
