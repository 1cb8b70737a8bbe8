"""What an experiment's variants did, read from the request events it tagged and the feedback
sent for them: the samples `experiment_stats.analyse` tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from capstan.prompts.experiment_stats import VariantData
from capstan.store.schema import Feedback, RequestEvent

# Feedback labels read as a thumbs up or down (case-insensitive); other labels are kept but
# not counted as binary feedback.
POSITIVE = frozenset({"positive", "good", "thumbs_up", "up", "correct", "yes", "accepted"})
NEGATIVE = frozenset({"negative", "bad", "thumbs_down", "down", "wrong", "no", "rejected"})


def variant_data(
    session: Session, org_id: uuid.UUID, experiment_id: uuid.UUID, versions: Sequence[int]
) -> list[VariantData]:
    """One `VariantData` per version, in the order given (the control first)."""
    samples: dict[int, dict[str, list[float]]] = {
        v: {"latency": [], "cost": [], "tokens": [], "scores": []} for v in versions
    }
    errors = dict.fromkeys(versions, 0)
    positives = dict.fromkeys(versions, 0)
    negatives = dict.fromkeys(versions, 0)
    events = session.execute(
        select(
            RequestEvent.prompt_version,
            RequestEvent.status,
            RequestEvent.latency_ms,
            RequestEvent.cost_micros,
            RequestEvent.prompt_tokens,
            RequestEvent.completion_tokens,
        ).where(RequestEvent.org_id == org_id, RequestEvent.experiment_id == experiment_id)
    )
    for version, status, latency, cost, prompt_tokens, completion_tokens in events:
        if version not in samples:
            continue
        if status != 200:
            errors[version] += 1
            continue
        bucket = samples[version]
        bucket["latency"].append(latency)
        if cost is not None:
            bucket["cost"].append(cost)
        if prompt_tokens is not None or completion_tokens is not None:
            bucket["tokens"].append((prompt_tokens or 0) + (completion_tokens or 0))
    feedback = session.execute(
        select(RequestEvent.prompt_version, Feedback.score, Feedback.label)
        .join(Feedback, Feedback.target_id == RequestEvent.id)
        .where(
            RequestEvent.org_id == org_id,
            RequestEvent.experiment_id == experiment_id,
            Feedback.org_id == org_id,
        )
    )
    for version, score, label in feedback:
        if version not in samples:
            continue
        if score is not None:
            samples[version]["scores"].append(score)
        word = (label or "").strip().lower()
        if word in POSITIVE:
            positives[version] += 1
        elif word in NEGATIVE:
            negatives[version] += 1
    return [
        VariantData(
            version=v,
            latencies_ms=samples[v]["latency"],
            costs_micros=[int(c) for c in samples[v]["cost"]],
            tokens=[int(t) for t in samples[v]["tokens"]],
            scores=samples[v]["scores"],
            positives=positives[v],
            negatives=negatives[v],
            errors=errors[v],
        )
        for v in versions
    ]
