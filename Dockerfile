# The control plane image (docker-compose.yml). Agents embed the
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
EXPOSE 50051
ENTRYPOINT ["fusebox"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
