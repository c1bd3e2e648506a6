"""Local generation speed against raw llama.cpp, and where a consultation's time goes.

Run through bench/run.py (it sets PMLM_VAR_DIR to a seeded cohort)."""

import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.db import transaction  # noqa: E402

from patients import models as pm  # noqa: E402
from prompting.consultation import SYSTEM_MESSAGE, guidance_messages, question_prompt  # noqa: E402
from prompting.guidance import guidance_request_create  # noqa: E402
from prompting.llm import build_backend  # noqa: E402
from prompting.models import PromptTemplate  # noqa: E402
from prompting.prompts import prompt_build, prompt_prefix  # noqa: E402

MAX_TOKENS = 128
RUNS = 5
SOURCES_ROOM_TRIED = 400


def timed_stream(generate) -> tuple[float, float, int]:
    """(time to first token ms, tokens per second after it, tokens) for one streamed generation."""
    started = time.perf_counter()
    first = []
    count = [0]

    def on_token(token):
        if not first:
            first.append(time.perf_counter())
        count[0] += 1

    generate(on_token)
    end = time.perf_counter()
    ttft = (first[0] - started) * 1000 if first else float("nan")
    rate = (count[0] - 1) / (end - first[0]) if first and count[0] > 1 else float("nan")
    return ttft, rate, count[0]


def forget(llama):
    """Nothing read before: neither in the live context nor in the prefix cache."""
    llama.reset()
    if llama.cache is not None:
        llama.cache.cache_state.clear()


def first_words(patients) -> dict:
    """Time to first words of a full guidance prompt (guidance sources included), read three ways on one loaded
    model, interleaved: cold (nothing read before); opened (her prompt's start read when her workspace opened);
    typed (that start, then her prompt up to the question's words, read while the question was typed: its
    sources are those the finished question brings). And whether the three answers are the same text."""
    from prompting.consultation import passage_texts

    backend = build_backend("llamacpp", {})
    llama, _ = backend.model()
    kinds = ("cold", "opened", "typed")
    runs = {kind: [] for kind in kinds}
    identical, tokens, start_kept, typed_kept = [], [], [], []
    for n, patient in enumerate(patients[:RUNS]):
        question = f"What should we plan for her next visit? ({n})"
        prompt, passages, _, _ = question_prompt(patient=patient, question=question, at=date.today())
        messages = guidance_messages(prompt.text)
        start = prompt_prefix(patient=patient)
        typed = prompt_prefix(patient=patient, knowledge=passage_texts(chunk for chunk, _ in passages))
        start_kept.append(prompt.text.startswith(start))
        typed_kept.append(prompt.text == typed + question)
        texts = {}
        for kind in kinds:
            forget(llama)
            if kind in ("opened", "typed"):
                backend.prefill([{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": start}])
            if kind == "typed":
                backend.prefill([{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": typed}])
            out = {}
            ttft, _, _ = timed_stream(
                lambda on_token: out.setdefault(
                    "r", backend.generate(messages, max_tokens=MAX_TOKENS, temperature=0.2, on_token=on_token)
                )
            )
            runs[kind].append(ttft)
            texts[kind] = out["r"].text
            tokens.append(out["r"].usage["prompt_tokens"])
        identical.append(texts["cold"] == texts["opened"] == texts["typed"])
    cold, opened, typed = (statistics.median(runs[kind]) for kind in kinds)
    return {
        "prompt_tokens_median": statistics.median(tokens),
        "cold_ttft_ms": round(cold, 1),
        "warm_ttft_ms": round(opened, 1),
        "cold_over_warm": round(cold / opened, 2),
        "typed_ttft_ms": round(typed, 1),
        "cold_over_typed": round(cold / typed, 2),
        "identical_text": f"{sum(identical)}/{len(identical)}",
        "prompt_starts_as_prefilled": f"{sum(start_kept)}/{len(start_kept)}",
        "prompt_is_typed_prefill_then_question": f"{sum(typed_kept)}/{len(typed_kept)}",
    }


def room_effect(patients, room: int) -> dict:
    """What keeping room for the guidance sources changes, over many patients and without the LLM: how many prompts
    with sources start as her prefilled prompt does, with no room and with `room`, and how many prompts change."""
    from dataclasses import replace

    from prompting.consultation import guidance_passages, passage_texts
    from prompting.peer_models import peer_summary_for
    from prompting.pmlm.composer import compose, prompt_start
    from prompting.pmlm.state import current_pregnancy
    from prompting.prompts import count_tokens, prompt_template_active, template_spec
    from prompting.selectors import patient_history, patient_identifiers

    question = "What should we plan for her next visit?"
    specs = {0: replace(template_spec(prompt_template_active()), sources_room=0)}
    specs[room] = replace(specs[0], sources_room=room)
    kept, texts = {0: 0, room: 0}, {0: [], room: []}
    for patient in patients:
        history = patient_history(patient, date.today())
        passages = passage_texts(c for c, _ in guidance_passages(question, history, current_pregnancy(history)))
        peer, _ = peer_summary_for(patient)
        common = dict(peer=peer, count_tokens=count_tokens, identifiers=patient_identifiers(patient))
        for r, spec in specs.items():
            start_text = prompt_start(compose(history, "?", spec, room_for_sources=True, **common).sections)
            text = compose(history, question, spec, knowledge=passages, **common).text
            kept[r] += text.startswith(start_text)
            texts[r].append(text)
    return {
        "patients": len(patients),
        "prompt_starts_as_prefilled_without_room": kept[0],
        f"prompt_starts_as_prefilled_with_room_{room}": kept[room],
        "prompts_changed_by_the_room": sum(a != b for a, b in zip(texts[0], texts[room], strict=True)),
    }


def shipped_file_against_copy(messages) -> dict:
    """The default local model reads the Q8_0 copy of the shipped Q4_1 GGUF: time to first words (the whole prompt
    read, nothing reused) and tokens per second on each, interleaved, same prompt."""
    from prompting.pmlm.tokens import smollm2_gguf_path

    backends = {
        "q4_1": build_backend("llamacpp", {"model_path": str(smollm2_gguf_path()), "prefix_cache_mb": 0}),
        "q8_0": build_backend("llamacpp", {"prefix_cache_mb": 0}),
    }
    runs = {name: [] for name in backends}
    for _ in range(RUNS):
        for name, backend in backends.items():
            forget(backend.model()[0])  # the whole prompt read each time
            runs[name].append(
                timed_stream(
                    lambda on_token, b=backend: b.generate(
                        messages, max_tokens=MAX_TOKENS, temperature=0.2, on_token=on_token
                    )
                )
            )
    out = {
        name: {
            "ttft_ms": round(statistics.median(r[0] for r in rs), 1),
            "tokens_per_s": round(statistics.median(r[1] for r in rs), 1),
        }
        for name, rs in runs.items()
    }
    out["ttft_q4_1_over_q8_0"] = round(out["q4_1"]["ttft_ms"] / out["q8_0"]["ttft_ms"], 2)
    out["tokens_per_s_q8_0_over_q4_1"] = round(out["q8_0"]["tokens_per_s"] / out["q4_1"]["tokens_per_s"], 2)
    return out


def main():
    patients = list(pm.Patient.objects.filter(organisation__slug="demo-clinic")[:20])
    prompt = prompt_build(patient=patients[0], question="What should we plan for her next visit?")
    messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": prompt.text}]
    backend = build_backend("llamacpp", {})
    llama, _ = backend.model()

    def raw(on_token):
        for event in llama.create_chat_completion(
            messages=messages, max_tokens=MAX_TOKENS, temperature=0.2, seed=7, stream=True
        ):
            if (event["choices"][0].get("delta") or {}).get("content"):
                on_token(event)

    def ours(on_token):
        backend.generate(messages, max_tokens=MAX_TOKENS, temperature=0.2, on_token=on_token)

    raw(lambda t: None)  # warm-up: both share the loaded model
    raw_runs, our_runs = [], []
    for _ in range(RUNS):  # interleaved, so machine noise hits both alike
        forget(llama)  # no prefix reuse from the run before: each run evaluates the whole prompt
        raw_runs.append(timed_stream(raw))
        forget(llama)
        our_runs.append(timed_stream(ours))

    shipped = shipped_file_against_copy(messages)
    room = room_effect(list(pm.Patient.objects.filter(organisation__slug="demo-clinic")[:80]), SOURCES_ROOM_TRIED)
    prefix_reuse = first_words(patients)
    # The same with room kept for the guidance sources (PromptTemplate.sources_room, off by default), in a
    # transaction rolled back afterwards: the cohort's template and stored prompts stay as they were.
    with transaction.atomic():
        PromptTemplate.objects.filter(active=True).update(sources_room=SOURCES_ROOM_TRIED)
        prefix_reuse_with_room = first_words(patients)
        transaction.set_rollback(True)

    consultation = []
    for n, patient in enumerate(patients[:6]):
        g = guidance_request_create(
            patient=patient, question=f"What should we plan for her next visit? ({n})", run_inline=True
        )
        if g.status == "done":
            consultation.append(g.timings)
    total = statistics.median(t["total_ms"] for t in consultation)
    outside = statistics.median(1 - t["llm_ms"] / t["total_ms"] for t in consultation)
    print(
        json.dumps(
            {
                "prompt_tokens": prompt.token_count,
                "raw_ttft_ms": round(statistics.median(r[0] for r in raw_runs), 1),
                "our_ttft_ms": round(statistics.median(r[0] for r in our_runs), 1),
                "raw_tokens_per_s": round(statistics.median(r[1] for r in raw_runs), 1),
                "our_tokens_per_s": round(statistics.median(r[1] for r in our_runs), 1),
                "consultations": len(consultation),
                "consultation_total_ms": round(total),
                "share_outside_llm": round(outside, 3),
                "outside_parts_ms": {
                    k: round(statistics.median(t.get(k, 0) for t in consultation), 1)
                    for k in ("retrieval_ms", "prompt_ms", "safety_ms")
                },
                "shipped_q4_1_against_q8_0_copy": shipped,
                "prefix_reuse": prefix_reuse,
                f"prefix_reuse_sources_room_{SOURCES_ROOM_TRIED}": prefix_reuse_with_room,
                "sources_room_over_80_patients": room,
            }
        )
    )


if __name__ == "__main__":
    main()
