# MBS dispatcher: the online path's long-running service (uvicorn) for ECS Fargate. It tokenizes,
# batches with buffers/ and invokes each buffer's online infer function; no torch, no model.
# Build context: the directory `mbs render` stages (.aws-sam/mbs-src): functions/, buffers/,
# infra/, optimizer/'s latency model and profiles, the tokenizer and requirements-dispatcher.txt.
# `mbs deploy` builds and pushes it to ECR (infra/aws/image.py); SAM builds images for Lambda
# functions only.
# The Docker Hub official image, through ECR Public's mirror (no Docker Hub pull limits).
FROM public.ecr.aws/docker/library/python:3.12-slim

# No .pyc writes: ECS runs the container with a read-only root filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8080 MBS_MODEL_DIR=/app/tokenizer
WORKDIR /app

COPY requirements-dispatcher.txt ./
RUN pip install --no-cache-dir -r requirements-dispatcher.txt

COPY buffers/ ./buffers/
COPY functions/ ./functions/
COPY infra/ ./infra/
COPY optimizer/ ./optimizer/
COPY tokenizer/ ./tokenizer/

# Fail the build, not the first task, if a dispatcher module cannot import from the image.
# __main__ is left out: importing it would start the server.
RUN python -c "import importlib, pkgutil, infra.dispatcher as d; [importlib.import_module(m.name) for m in pkgutil.iter_modules(d.__path__, 'infra.dispatcher.') if not m.name.endswith('__main__')]"

# Not root: the service needs no privilege (port 8080 is unprivileged).
USER 10001
EXPOSE 8080
CMD ["python", "-m", "infra.dispatcher"]
