"""Reinforcement learning of the refiner policy with TRL's GRPOTrainer. No Django import.

For each training example (a patient at an encounter her physician wrote a recommendation for,
and the question asked there) the policy writes a group of candidate instructions; each becomes a
refined prompt, passes the guard, is answered by the target LLM, and is scored against the
physician's recommendation. GRPO raises the probability of the candidates that scored above their
group's mean. Validation compares, on patients the policy never trained on, the reward of the
initial prompt with the reward of the refined prompt as it would be used (the guard falls back
to the initial prompt when the refined one fails it).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .holdout import split_patients
from .refine import Problem, check_refined, clean_instructions, policy_messages, refined_text
from .rewards import Embed, GuidanceScore, Reference, RewardWeights, reward, score_guidance


@dataclass(frozen=True)
class RefinementConfig:
    steps: int = 4
    num_generations: int = 4  # the group GRPO compares
    examples_per_step: int = 1
    learning_rate: float = 1e-5
    beta: float = 0.0  # KL to the reference policy; 0 keeps one model in memory (TRL's default)
    temperature: float = 1.0  # sampling of candidates while training
    max_completion_tokens: int = 96
    target_max_tokens: int = 160  # the target LLM's answer while scoring
    max_examples: int = 24
    validation_share: float = 0.25
    max_validation: int = 6
    seed: int = 7
    device: str = "cpu"
    bf16: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def default_config(device: str = "cpu", **overrides) -> RefinementConfig:
    """A few steps with small groups on a CPU; more steps, larger groups and bf16 on a GPU."""
    if device == "cuda":
        base = RefinementConfig(steps=60, num_generations=8, examples_per_step=4, max_examples=400, max_validation=40,
                                target_max_tokens=320, max_completion_tokens=128, device="cuda", bf16=True)
    else:
        base = RefinementConfig()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Example:
    key: str  # where it comes from, e.g. "encounter 812"
    patient: int  # examples are split by patient
    initial_text: str
    sections: list[dict]
    risk_flag_labels: list[str]
    reference: Reference
    token_budget: int
    identifiers: list[str] = field(default_factory=list)  # held in memory for the guard, never sent


@dataclass
class Outcome:
    reward: float
    prompt: str
    guidance: str = ""
    score: GuidanceScore | None = None
    problems: list[Problem] = field(default_factory=list)
    instructions: str = ""

    @property
    def accepted(self) -> bool:
        return not self.problems


class Scorer:
    """Turns a policy answer into a reward: guard, target LLM (cached), similarity to the physician."""

    def __init__(self, *, answer: Callable[[str], str], embed: Embed, count_tokens: Callable[[str], int],
                 weights: RewardWeights = RewardWeights()):
        self.answer, self.embed, self.count_tokens, self.weights = answer, embed, count_tokens, weights

    def initial(self, example: Example) -> Outcome:
        guidance = self.answer(example.initial_text)
        score = score_guidance(guidance, example.reference, self.embed)
        return Outcome(reward(score, (), self.weights), example.initial_text, guidance, score)

    def refined(self, example: Example, policy_answer: str, *, truncated: bool = False) -> Outcome:
        instructions = clean_instructions(policy_answer, truncated=truncated)
        text = refined_text(example.sections, instructions)
        problems = check_refined(
            initial_text=example.initial_text, initial_sections=example.sections, risk_flag_labels=example.risk_flag_labels,
            refined=text, instructions=instructions, identifiers=example.identifiers, count_tokens=self.count_tokens,
            token_budget=example.token_budget)
        if any(p.kind in ("malformed", "identifier") for p in problems):
            return Outcome(reward(None, problems, self.weights), text, problems=problems, instructions=instructions)
        guidance = self.answer(text)
        score = score_guidance(guidance, example.reference, self.embed)
        return Outcome(reward(score, problems, self.weights), text, guidance, score, problems, instructions)


def split_by_patient(examples: Sequence[Example], *, share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Every example of a patient lands on the same side, so validation patients are never trained on.

    The split is the evaluation's (`holdout.split_patients`): with the same seed, a patient the
    evaluation holds out was never trained on."""
    _, held_out = split_patients([e.patient for e in examples], share=share, seed=seed)
    held = set(held_out)
    return [e for e in examples if e.patient not in held], [e for e in examples if e.patient in held]


@dataclass
class StepRecord:
    step: int
    reward_mean: float
    reward_std: float
    accepted_share: float
    seconds: float
    scoring_seconds: float = 0.0  # of which: the target LLM answering and the scoring


@dataclass
class ValidationRow:
    key: str
    patient: int
    reward_initial: float
    reward_refined: float  # as used: the initial prompt's reward when the guard rejected the refined one
    reward_policy: float  # the refined prompt's own reward, penalties included
    accepted: bool
    problems: list[dict]
    instructions: str
    initial_prompt: str
    refined_prompt: str


@dataclass
class TrainingResult:
    checkpoint: Path
    steps: list[StepRecord]
    validation: list[ValidationRow]
    stopped: bool = False

    @property
    def reward_initial(self) -> float | None:
        return _mean([v.reward_initial for v in self.validation])

    @property
    def reward_refined(self) -> float | None:
        return _mean([v.reward_refined for v in self.validation])

    @property
    def accepted_share(self) -> float | None:
        return _mean([1.0 if v.accepted else 0.0 for v in self.validation])


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


class Stopped(Exception):
    """The run was cancelled between steps."""


def train_policy(*, base_checkpoint: Path, output_dir: Path, train: Sequence[Example], validation: Sequence[Example],
                 config: RefinementConfig, scorer: Scorer, policy_answer: Callable[[Path, str], tuple[str, bool]],
                 on_step: Callable[[StepRecord], None] | None = None, should_stop: Callable[[], bool] | None = None,
                 on_progress: Callable[[int, str], None] | None = None) -> TrainingResult:
    """Train with GRPO, save the policy to `output_dir`, validate initial vs refined prompts.

    `policy_answer(checkpoint, initial_prompt) -> (text, truncated)` is how the saved policy is used
    afterwards (the same path guidance requests take), so validation measures what clinicians get.
    """
    if not train:
        raise ValueError("No training examples: the organisation needs encounters with physician recommendations.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    progress = on_progress or (lambda percent, message: None)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_checkpoint))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(base_checkpoint), dtype=dtype)

    batch: list[Outcome] = []
    scoring = [0.0]

    def reward_function(prompts, completions, example_index, completion_ids, **_):
        started = time.perf_counter()
        rewards = []
        for completion, index, ids in zip(completions, example_index, completion_ids):
            text = completion[-1]["content"] if isinstance(completion, list) else completion
            truncated = len(ids) >= config.max_completion_tokens and ids[-1] != tokenizer.eos_token_id
            outcome = scorer.refined(train[index], text, truncated=truncated)
            batch.append(outcome)
            rewards.append(outcome.reward)
        scoring[0] += time.perf_counter() - started
        return rewards

    steps: list[StepRecord] = []
    stopped = [False]

    class Progress(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            rewards = [o.reward for o in batch]
            record = StepRecord(
                step=state.global_step, reward_mean=round(statistics.fmean(rewards), 4) if rewards else 0.0,
                reward_std=round(statistics.pstdev(rewards), 4) if len(rewards) > 1 else 0.0,
                accepted_share=round(sum(o.accepted for o in batch) / len(batch), 3) if batch else 0.0,
                seconds=round(time.perf_counter() - self.started, 2), scoring_seconds=round(scoring[0], 2))
            batch.clear()
            scoring[0] = 0.0
            steps.append(record)
            if on_step:
                on_step(record)
            progress(5 + int(75 * state.global_step / config.steps),
                     f"Step {state.global_step}/{config.steps}: mean reward {record.reward_mean:.3f}")
            if should_stop and should_stop():
                stopped[0] = True
                control.should_training_stop = True

    dataset = Dataset.from_list([{"prompt": policy_messages(e.initial_text), "example_index": i} for i, e in enumerate(train)])
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' renames, raised inside TRL
        args = GRPOConfig(
            output_dir=scratch, max_steps=config.steps, learning_rate=config.learning_rate, beta=config.beta,
            num_generations=config.num_generations,
            per_device_train_batch_size=config.num_generations * config.examples_per_step,
            max_completion_length=config.max_completion_tokens, temperature=config.temperature,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, seed=config.seed,
            use_cpu=config.device == "cpu", bf16=config.bf16, dataloader_num_workers=0,
            # On a GPU, recomputing activations saves memory for larger groups; on a CPU it only costs time.
            gradient_checkpointing=config.device != "cpu",
        )
        trainer = GRPOTrainer(model=model, reward_funcs=[reward_function], args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[Progress()])
        trainer.remove_callback(PrinterCallback)  # progress goes to the run row, never to stdout
        progress(5, f"Training on {len(train)} examples from {len({e.patient for e in train})} patients")
        trainer.train()
    if stopped[0]:
        raise Stopped()

    progress(82, "Saving the policy")
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    del trainer, model

    rows = []
    for n, example in enumerate(validation, 1):
        progress(82 + int(17 * n / max(1, len(validation))), f"Validating {n}/{len(validation)}: initial vs refined prompt")
        if should_stop and should_stop():
            raise Stopped()
        initial = scorer.initial(example)
        answer, truncated = policy_answer(output_dir, example.initial_text)
        refined = scorer.refined(example, answer, truncated=truncated)
        rows.append(ValidationRow(
            key=example.key, patient=example.patient, reward_initial=initial.reward,
            reward_refined=refined.reward if refined.accepted else initial.reward, reward_policy=refined.reward,
            accepted=refined.accepted, problems=[p.as_dict() for p in refined.problems], instructions=refined.instructions,
            initial_prompt=example.initial_text, refined_prompt=refined.prompt))
    return TrainingResult(output_dir, steps, rows)
