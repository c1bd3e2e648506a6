"""A Hugging Face checkpoint directory run in-process with transformers (the refiner policy, or a
larger model on a GPU). Loaded once per process and directory. A generation that runs past the
deadline its endpoint sets (waiting for its turn included) is stopped at the next token."""

from __future__ import annotations

import os
import threading
import time
from functools import lru_cache
from pathlib import Path

from .base import LLMError, LLMResult, Messages, TokenCallback, deadline_passed


@lru_cache(maxsize=2)
def _load(directory: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device)
    model.eval()
    return tokenizer, model, threading.Lock()


def _deadline_criterion(at: float):
    """A stopping criterion that ends generation once the deadline has passed, and remembers that it did."""
    import torch
    from transformers import StoppingCriteria

    class PastDeadline(StoppingCriteria):
        passed = False

        def __call__(self, input_ids, scores, **kwargs):
            self.passed = self.passed or time.monotonic() >= at
            return torch.full((input_ids.shape[0],), self.passed, dtype=torch.bool, device=input_ids.device)

    return PastDeadline()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend:
    kind = "transformers"

    def __init__(self, *, checkpoint: str | Path, device: str = "", seed: int = 7, deadline: float | None = None):
        self.checkpoint = str(checkpoint)
        if not (Path(self.checkpoint) / "config.json").exists():
            raise LLMError(f"{self.checkpoint} is not a transformers checkpoint (no config.json)")
        self.model_name = Path(self.checkpoint).name
        self.device = device or default_device()
        self.seed = seed
        self.deadline = float(deadline) if deadline else None

    def generate(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
        on_token: TokenCallback | None = None,
    ) -> LLMResult:
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        started = time.monotonic()
        tokenizer, model, lock = _load(self.checkpoint, self.device)
        past_deadline = _deadline_criterion(started + self.deadline) if self.deadline else None
        with lock, torch.inference_mode():
            torch.manual_seed(self.seed)
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(self.device)
            kwargs = dict(
                **inputs,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
            if past_deadline is not None:
                kwargs["stopping_criteria"] = StoppingCriteriaList([past_deadline])
            if temperature > 0:
                kwargs["temperature"] = temperature
            ttft = None
            if on_token is None:
                output = model.generate(**kwargs)
                new_tokens = output[0][inputs["input_ids"].shape[1] :]
                text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            else:
                streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
                worker = threading.Thread(target=model.generate, kwargs={**kwargs, "streamer": streamer})
                worker.start()
                parts = []
                for token in streamer:
                    if token:
                        if ttft is None:
                            ttft = int((time.monotonic() - started) * 1000)
                        parts.append(token)
                        on_token(token)
                worker.join()
                text = "".join(parts)
        if past_deadline is not None and past_deadline.passed:
            raise deadline_passed(self.deadline)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        completion_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return LLMResult(
            text=text.strip(),
            model=self.model_name,
            latency_ms=int((time.monotonic() - started) * 1000),
            ttft_ms=ttft,
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "counted": "local",
            },
        )
