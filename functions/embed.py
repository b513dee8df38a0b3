"""Online infer: one batch of routed texts -> one padded forward pass -> the embeddings.

The dispatcher service (infra/dispatcher) invokes this synchronously (Lambda Invoke,
RequestResponse) with texts it has already cut to the model's 256 tokens, and answers its
callers from the reply; nothing is stored, the caller holds the request. An exception here fails
the whole batch (a FunctionError on Lambda): the dispatcher then bisects the batch to isolate a
poison input, so that only that input's caller gets an error.
"""

from __future__ import annotations

from typing import Any, TypedDict

from aws_lambda_powertools import Logger

from functions.shared.model import EmbedResult, get_embedder

logger = Logger(service="embed")

MODEL_ID = "all-MiniLM-L6-v2"
STAND_IN_ID = "stand-in"  # functions/shared/model.py's StandInEmbedder: hash vectors, no model


class EmbedInput(TypedDict):
    id: str
    text: str


class EmbedEvent(TypedDict):
    inputs: list[EmbedInput]
    buffer: str


class EmbedReply(TypedDict):
    embeddings: list[list[float]]  # in input order, unit length
    padded_length: int  # tokens per row of the forward pass: the batch's longest member
    inference_ms: float
    device: str
    model: str


class BadEvent(ValueError):
    """An event that is not an EmbedEvent; the message names the bad field."""


def parse_event(event: Any) -> tuple[list[str], str]:
    """The texts and buffer name of an EmbedEvent; BadEvent names what is wrong."""
    if not isinstance(event, dict):
        raise BadEvent(f"event must be an object, got {type(event).__name__}")
    inputs, buffer = event.get("inputs"), event.get("buffer")
    if not isinstance(buffer, str):
        raise BadEvent(f"'buffer' must be a string, got {buffer!r}")
    if not isinstance(inputs, list) or not inputs:
        raise BadEvent(f"'inputs' must be a non-empty list, got {type(inputs).__name__}")
    texts = []
    for i, item in enumerate(inputs):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise BadEvent(f"inputs[{i}] must be an object with a string 'text'")
        texts.append(item["text"])
    return texts, buffer


def model_id(embedder: Any) -> str:
    """The name a reply reports: the stand-in never passes for the model; a directory's own."""
    return STAND_IN_ID if embedder.device == STAND_IN_ID else getattr(embedder, "name", MODEL_ID)


def embed_batch(event: Any, embedder: Any) -> EmbedResult:
    """Run one batch: one forward pass, padded to its longest member."""
    texts, buffer = parse_event(event)
    result = embedder.embed(texts)
    logger.debug("batch embedded", extra={"buffer": buffer, "batch_size": len(texts),
                                          "padded_length": result.padded_length,
                                          "inference_ms": result.inference_ms})
    return result


def reply_of(result: EmbedResult, embedder: Any) -> EmbedReply:
    """The JSON reply Lambda sends back to the dispatcher."""
    return EmbedReply(embeddings=result.vectors.tolist(), padded_length=result.padded_length,
                      inference_ms=result.inference_ms, device=result.device,
                      model=model_id(embedder))


def embed_event(event: Any, embedder: Any) -> EmbedReply:
    """What the handler answers for `event`."""
    return reply_of(embed_batch(event, embedder), embedder)


@logger.inject_lambda_context
def handler(event: dict, context: object) -> EmbedReply:
    return embed_event(event, get_embedder())
