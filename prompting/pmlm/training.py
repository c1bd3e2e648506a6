"""Reinforcement learning of the edit policy with TRL's GRPOTrainer. No Django import.

A training example is a patient at an encounter her physician wrote a recommendation for, the
question asked there, and whether guidance sources were given. The policy reads a compact
summary of her situation (`situation.py`) and emits an edit code from the menu (`edits.py`).

1. **Reward table.** Every edit of the menu is applied to every training example, answered by
   the target LLM (greedy, cached by prompt hash) and scored against the physician. The edits
   of one prompt are asked one after another, so a local model reuses the prompt's beginning
   (every edit adds its sentences at the end). `target_calls` counts the distinct answers.
2. **Best fixed edit.** The one edit with the best mean reward on the training examples: the
   fair baseline a per-patient policy must beat.
3. **GRPO.** The policy (a small causal LM) samples a group of codes for each example; each
   code's reward is read from the table; GRPO raises the codes that beat their group's mean.
4. **Validation.** On patients the policy never trained on (the evaluation's hold-out rule),
   the initial prompt, the policy's edit and the best fixed edit are answered and scored; the
   paired differences get patient-clustered bootstrap confidence intervals.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

from .composer import render
from .edits import IDENTITY, MENU, MENU_VERSION, edit_named, edited_sections
from .evaluation import paired_difference
from .grounding import record_of, unsupported_claims
from .holdout import split_patients
from .refine import Problem, check_refined
from .rewards import Embed, GuidanceScore, Reference, RewardWeights, reward, score_guidance
from .situation import kind_of_patient, situation_summary, sources_setting


@dataclass(frozen=True)
class RefinementConfig:
    steps: int = 30
    num_generations: int = 8  # the group GRPO compares: 8 codes sampled from the menu's 11
    examples_per_step: int = 1
    learning_rate: float = 2e-4
    beta: float = 0.0  # KL to the reference policy; 0 keeps one model in memory (TRL's default)
    # Sampling of codes while training: the instruct model's prior favours one code strongly, and
    # a group whose codes are all the same teaches nothing; choosing takes the most probable code.
    temperature: float = 2.0
    trainable_layers: int = 4  # the last transformer layers GRPO updates (0: all); the rest stay as pretrained
    max_completion_tokens: int = 3  # an edit code's digits and the end of the turn
    target_max_tokens: int | None = None  # the target LLM's answer; None: the endpoint's, as evaluations use
    max_examples: int = 16  # training encounters (each asked with and without guidance sources): the table's cost
    examples_per_patient: int = 1  # training encounters per learning patient: more patients for the same answers
    validation_share: float = 0.25
    max_validation: int = 60  # held-out encounters (each asked with and without guidance sources)
    seed: int = 7
    device: str = "cpu"
    bf16: bool = False
    menu: str = MENU_VERSION

    def as_dict(self) -> dict:
        return asdict(self)


def default_config(device: str = "cpu", **overrides) -> RefinementConfig:
    """On a CPU: the table on 16 encounters of 16 patients and 30 GRPO steps (a cold run within an hour on two
    cores); on a GPU: more of both, bf16."""
    if device == "cuda":
        base = RefinementConfig(
            steps=300,
            num_generations=8,
            examples_per_step=8,
            max_examples=400,
            examples_per_patient=2,
            max_validation=400,
            trainable_layers=0,
            device="cuda",
            bf16=True,
        )
    else:
        base = RefinementConfig()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Example:
    key: str  # where it comes from, e.g. "visit of 2 May 2025 (encounter 812), sources on"
    patient: int  # examples are split by patient
    initial_text: str
    sections: list[dict]
    risk_flag_labels: list[str]
    reference: Reference
    token_budget: int
    question: str = ""
    identifiers: list[str] = field(default_factory=list)  # held in memory for the guard, never sent
    rag: bool = True
    medicines: list[str] | None = None  # her active medicines, for grounding (None: her record's medicines line)

    @cached_property
    def situation(self) -> str:
        return situation_summary(self.sections, self.risk_flag_labels, self.question)

    @cached_property
    def kinds(self) -> list[str]:
        return kind_of_patient(self.sections, self.risk_flag_labels)


@dataclass
class Outcome:
    code: str
    reward: float
    prompt: str
    guidance: str = ""
    score: GuidanceScore | None = None
    problems: list[Problem] = field(default_factory=list)
    unsupported_claims: int | None = None  # sentences asserting about her what her record does not (None: not sent)

    @property
    def accepted(self) -> bool:
        return not self.problems


def edit_prompt(
    example: Example, code: str, *, count_tokens: Callable[[str], int]
) -> tuple[str, list[dict], list[Problem]]:
    """(text, sections, problems) of an edit of the example's initial prompt; the identity edit is the initial
    prompt."""
    edit = edit_named(code)
    if edit.is_identity:
        return example.initial_text, example.sections, []
    sections = edited_sections(example.sections, edit, example.risk_flag_labels)
    text = render(sections)
    problems = check_refined(
        initial_text=example.initial_text,
        initial_sections=example.sections,
        risk_flag_labels=example.risk_flag_labels,
        refined=text,
        identifiers=example.identifiers,
        count_tokens=count_tokens,
        token_budget=example.token_budget,
    )
    return text, sections, problems


class Scorer:
    """An edit of an example → its reward: guard, target LLM (cached by prompt hash), closeness to the physician.

    Outcomes are kept in memory, so the reward table and GRPO never score the same edit twice."""

    def __init__(
        self,
        *,
        answer: Callable[[str], str],
        embed: Embed,
        count_tokens: Callable[[str], int],
        weights: RewardWeights = RewardWeights(),
        distinct_calls: Callable[[], int] | None = None,
    ):
        self.answer, self.embed, self.count_tokens, self.weights = answer, embed, count_tokens, weights
        self._outcomes: dict[tuple[str, str], Outcome] = {}
        self._prompts: set[str] = set()
        self._distinct_calls = distinct_calls

    @property
    def target_calls(self) -> int:
        """Distinct prompts the target LLM answered for this run (the answer cache may have held some already)."""
        return self._distinct_calls() if self._distinct_calls else len(self._prompts)

    def outcome(self, example: Example, code: str) -> Outcome:
        key = (example.key, code)
        if key in self._outcomes:
            return self._outcomes[key]
        text, _, problems = edit_prompt(example, code, count_tokens=self.count_tokens)
        if problems:  # never sent: as used, the initial prompt answers, and the edit pays its penalty
            initial = self.outcome(example, IDENTITY)
            outcome = Outcome(
                code,
                round(initial.reward - sum(getattr(self.weights, p.kind) for p in problems), 4),
                text,
                problems=problems,
            )
        else:
            guidance = self.answer(text)
            self._prompts.add(text)
            score = score_guidance(guidance, example.reference, self.embed)
            claims = unsupported_claims(guidance, record_of(example.sections), example.medicines)
            outcome = Outcome(
                code, reward(score, (), self.weights), text, guidance, score, unsupported_claims=len(claims)
            )
        self._outcomes[key] = outcome
        return outcome

    def used(self, example: Example, code: str) -> Outcome:
        """The outcome as a clinician would get it: the initial prompt's when the guard rejects the edit."""
        outcome = self.outcome(example, code)
        return outcome if outcome.accepted else self.outcome(example, IDENTITY)


def split_by_patient(examples: Sequence[Example], *, share: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Every example of a patient lands on the same side, so validation patients are never trained on.

    The split is the evaluation's (`holdout.split_patients`): with the same seed, a patient the
    evaluation holds out was never trained on."""
    _, held_out = split_patients([e.patient for e in examples], share=share, seed=seed)
    held = set(held_out)
    return [e for e in examples if e.patient not in held], [e for e in examples if e.patient in held]


# --- 1 and 2: the reward table and the best fixed edit -------------------------------------------------


def reward_table(
    examples: Sequence[Example],
    scorer: Scorer,
    *,
    codes: Sequence[str] = tuple(e.code for e in MENU),
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, dict[str, float]]:
    """{example key: {code: reward as used}}; the edits of one prompt are asked one after another."""
    table = {}
    for n, example in enumerate(examples, 1):
        if should_stop and should_stop():
            raise Stopped()
        table[example.key] = {code: scorer.used(example, code).reward for code in codes}
        if on_progress:
            on_progress(n, len(examples))
    return table


def best_fixed_edit(
    table: dict[str, dict[str, float]], eligible: Callable[[str], bool] = lambda code: True
) -> tuple[str, float]:
    """The eligible edit with the best mean reward over the table's examples (ties: the earlier in the
    menu); the initial prompt is always eligible."""
    codes = [code for code in next(iter(table.values())) if code == IDENTITY or eligible(code)]
    means = {code: statistics.fmean(row[code] for row in table.values()) for code in codes}
    best = max(codes, key=lambda code: (means[code], -codes.index(code)))
    return best, round(means[best], 4)


def _mean_defined(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.fmean(values), 4) if values else None


def key_item_precision(outcomes: Sequence[Outcome]) -> float | None:
    """Mean key-item precision of guidance as the evaluation takes it: over the answers that name a key item."""
    return _mean_defined(o.score.precision for o in outcomes if o.score is not None)


def precision_by_edit(
    examples: Sequence[Example], scorer: Scorer, codes: Sequence[str] = tuple(e.code for e in MENU)
) -> dict[str, float | None]:
    """Each edit's mean key-item precision on the examples, as used (read from the scorer's outcomes: no new
    answers)."""
    return {code: key_item_precision([scorer.used(example, code) for example in examples]) for code in codes}


def keeps_precision(precision: float | None, initial: float | None) -> bool:
    """The guardrail: an edit is deployed only if its guidance names no more of what the physician did not
    than the initial prompt's (a reward gain bought by listing everything is not a gain to a clinic)."""
    return precision is None or initial is None or precision >= initial


def unsupported_claims_rate(outcomes: Sequence[Outcome]) -> float | None:
    """Mean unsupported claims about her per answer (grounding.py), over the answers that were sent."""
    return _mean_defined(o.unsupported_claims for o in outcomes)


def claims_by_edit(
    examples: Sequence[Example], scorer: Scorer, codes: Sequence[str] = tuple(e.code for e in MENU)
) -> dict[str, float | None]:
    """Each edit's unsupported claims about her per answer on the examples, as used (no new answers)."""
    return {code: unsupported_claims_rate([scorer.used(example, code) for example in examples]) for code in codes}


def claims_increase(examples: Sequence[Example], scorer: Scorer, choose: Callable[[Example], str]) -> dict:
    """Unsupported claims about her in the answer to the chosen edit minus those in the initial prompt's, paired
    on the examples, with the patient-clustered 95% interval ({difference, ci, n, patients})."""
    pairs = []
    for example in examples:
        edited, initial = scorer.used(example, choose(example)), scorer.used(example, IDENTITY)
        if edited.unsupported_claims is not None and initial.unsupported_claims is not None:
            pairs.append((example.patient, edited.unsupported_claims - initial.unsupported_claims))
    return paired_difference(pairs)


def keeps_grounding(increase: dict | None) -> bool:
    """The second guardrail: an edit is not deployed when its answers make more unsupported claims about her
    (findings, numbers or medicines her record does not support) than the initial prompt's, shown by the paired
    interval lying above zero. Unsupported claims are rare, so on a few examples a point estimate decides by
    luck: none in 16 answers is not evidence of none, and a guard on means sets aside the edit that happened to
    show one or two while deploying another that happened to show none."""
    ci = (increase or {}).get("ci")
    return not ci or ci[0] <= 0


def guardrail_reasons(
    precision: float | None,
    initial_precision: float | None,
    claims: float | None = None,
    initial_claims: float | None = None,
    increase: dict | None = None,
) -> list[str]:
    """Why an edit (or a policy) may not be deployed, in the curators' words; empty when it keeps both guardrails."""
    reasons = []
    if not keeps_precision(precision, initial_precision):
        reasons.append(f"it lowered key-item precision to {precision:.3f} (initial prompt {initial_precision:.3f})")
    if not keeps_grounding(increase):
        low, high = increase["ci"]
        reasons.append(
            f"it made more unsupported claims about her: {claims:.2f} per answer against {initial_claims:.2f} for "
            f"the initial prompt (paired difference {increase['difference']:+.2f}, 95% CI {low:+.2f} to {high:+.2f})"
        )
    return reasons


def fixed_edit_choice(examples: Sequence[Example], table: dict[str, dict[str, float]], scorer: Scorer) -> dict:
    """The best fixed edit on these examples under the precision and grounding guardrails, and what it was
    chosen over.

    {code, label, mean_reward, initial_mean_reward, key_item_precision, initial_key_item_precision,
    unsupported_claims, initial_unsupported_claims, set_aside (the edit with the best reward when a guardrail
    stopped it, with its reasons, else None), edit_precision, edit_unsupported_claims}."""
    rows = {e.key: table[e.key] for e in examples}
    codes = list(next(iter(rows.values())))
    precision = precision_by_edit(examples, scorer, codes)
    claims = claims_by_edit(examples, scorer, codes)
    increases = {code: claims_increase(examples, scorer, lambda example, code=code: code) for code in codes}

    def reasons(code):
        return guardrail_reasons(precision[code], precision[IDENTITY], claims[code], claims[IDENTITY], increases[code])

    best, best_mean = best_fixed_edit(rows, eligible=lambda code: not reasons(code))
    by_reward, by_reward_mean = best_fixed_edit(rows)
    return {
        "code": best,
        "label": edit_named(best).label,
        "mean_reward": best_mean,
        "initial_mean_reward": round(statistics.fmean(row[IDENTITY] for row in rows.values()), 4),
        "key_item_precision": precision[best],
        "initial_key_item_precision": precision[IDENTITY],
        "unsupported_claims": claims[best],
        "initial_unsupported_claims": claims[IDENTITY],
        "claims_increase": {k: increases[best][k] for k in ("difference", "ci")},
        "examples": len(rows),
        "set_aside": None
        if by_reward == best
        else {
            "code": by_reward,
            "label": edit_named(by_reward).label,
            "mean_reward": by_reward_mean,
            "key_item_precision": precision[by_reward],
            "unsupported_claims": claims[by_reward],
            "claims_increase": {k: increases[by_reward][k] for k in ("difference", "ci")},
            "reasons": reasons(by_reward),
        },
        "edit_precision": precision,
        "edit_unsupported_claims": claims,
    }


def by_sources(examples: Sequence[Example]) -> dict[str, list[Example]]:
    """The examples per guidance-sources setting ("on", "off"), as the prompt itself says."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(sources_setting(example.sections), []).append(example)
    return {setting: groups[setting] for setting in ("on", "off") if setting in groups}


def edit_gains(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each edit's mean reward gain over the initial prompt on the table's examples."""
    return {
        code: round(statistics.fmean(row[code] - row[IDENTITY] for row in table.values()), 4)
        for code in next(iter(table.values()))
    }


# --- 3: the policy ----------------------------------------------------------------------------------------

POLICY_SYSTEM = (
    "You choose how to edit a clinical decision-support prompt for one patient. The edits:\n"
    + "\n".join(f"{e.code}: {e.label}" for e in MENU)
    + "\nReply with one edit code."
)
ANSWER_PREFIX = "Edit E"


def policy_prompt(tokenizer, situation: str) -> str:
    """The text the policy completes: her situation, then the start of its answer ("Edit E"), so
    that what it writes is the code's number."""
    messages = [{"role": "system", "content": POLICY_SYSTEM}, {"role": "user", "content": situation}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + ANSWER_PREFIX


def code_from_completion(text: str) -> str | None:
    digits = ""
    for ch in text.strip():
        if not ch.isdigit():
            break
        digits += ch
    code = f"E{digits}" if digits else None
    return code if code and any(e.code == code for e in MENU) else None


class EditPolicy:
    """A trained policy: for a situation, the probability of each edit of the menu, and its choice (the most probable).

    Every code is scored (log-probability of its digits and the end of the turn), so the choice is
    always a code of the menu."""

    def __init__(self, checkpoint: Path | str, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch  # loaded lazily: importing the method must not load torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch, self.device = torch, device
        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).to(device).eval()
        end = self.tokenizer.eos_token or ""
        self.codes = [e.code for e in MENU]
        self._suffix_ids = [
            self.tokenizer(code[1:] + end, add_special_tokens=False)["input_ids"] for code in self.codes
        ]

    def probabilities(self, situation: str) -> dict[str, float]:
        """Her situation is read once; every code's digits then continue from the same cached
        state (the prompt is ~400 tokens, a code 2), so a choice costs about one forward pass."""
        torch = self.torch
        prefix = self.tokenizer(policy_prompt(self.tokenizer, situation), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            read = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(read.logits[0, -1].float(), dim=-1)
            totals = {}
            # Codes whose suffixes have the same length continue together, without padding.
            for length in sorted({len(s) for s in self._suffix_ids}):
                rows = [(code, suffix) for code, suffix in zip(self.codes, self._suffix_ids) if len(suffix) == length]
                for code, suffix in rows:
                    totals[code] = float(first[suffix[0]])
                if length == 1:
                    continue
                state = copy.deepcopy(read.past_key_values)  # a forward pass extends the cache it is given
                state.batch_repeat_interleave(len(rows))
                ids = torch.tensor([suffix[:-1] for _, suffix in rows], device=self.device)
                logprobs = torch.log_softmax(
                    self.model(input_ids=ids, past_key_values=state, use_cache=True).logits.float(), dim=-1
                )
                for row, (code, suffix) in enumerate(rows):
                    totals[code] += sum(
                        float(logprobs[row, position, token]) for position, token in enumerate(suffix[1:])
                    )
        scores = torch.softmax(torch.tensor([totals[code] for code in self.codes]), dim=0).tolist()
        return {code: round(p, 4) for code, p in zip(self.codes, scores)}

    def choose(self, situation: str) -> tuple[str, dict[str, float]]:
        probabilities = self.probabilities(situation)
        return max(probabilities, key=probabilities.get), probabilities


@dataclass
class StepRecord:
    step: int
    reward_mean: float
    reward_std: float
    accepted_share: float  # share of sampled completions that were a code of the menu
    seconds: float
    scoring_seconds: float = 0.0


class Stopped(Exception):
    """The run was cancelled."""


def train_policy(
    *,
    base_checkpoint: Path,
    output_dir: Path,
    train: Sequence[Example],
    table: dict[str, dict[str, float]],
    config: RefinementConfig,
    invalid_reward: Callable[[Example], float],
    on_step: Callable[[StepRecord], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, str], None] | None = None,
) -> list[StepRecord]:
    """GRPO over edit codes, rewards read from the table; saves the policy to `output_dir`."""
    if not train:
        raise ValueError("No training examples: the organisation needs encounters with physician recommendations.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # lazily: training is the only step that needs torch, TRL and datasets
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
    _freeze_all_but_last(model, config.trainable_layers)

    batch: list[tuple[float, bool]] = []

    def reward_function(prompts, completions, example_index, **_):
        rewards = []
        for completion, index in zip(completions, example_index):
            example = train[index]
            code = code_from_completion(completion)
            value = table[example.key][code] if code else invalid_reward(example)
            batch.append((value, code is not None))
            rewards.append(value)
        return rewards

    steps: list[StepRecord] = []
    stopped = [False]

    class Progress(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            rewards = [r for r, _ in batch]
            record = StepRecord(
                step=state.global_step,
                reward_mean=round(statistics.fmean(rewards), 4) if rewards else 0.0,
                reward_std=round(statistics.pstdev(rewards), 4) if len(rewards) > 1 else 0.0,
                accepted_share=round(sum(ok for _, ok in batch) / len(batch), 3) if batch else 0.0,
                seconds=round(time.perf_counter() - self.started, 2),
            )
            batch.clear()
            steps.append(record)
            if on_step:
                on_step(record)
            progress(
                60 + int(15 * state.global_step / config.steps),
                f"Step {state.global_step}/{config.steps}: mean reward {record.reward_mean:.3f}",
            )
            if should_stop and should_stop():
                stopped[0] = True
                control.should_training_stop = True

    dataset = Dataset.from_list(
        [{"prompt": policy_prompt(tokenizer, e.situation), "example_index": i} for i, e in enumerate(train)]
    )
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # transformers' renames, raised inside TRL
        args = GRPOConfig(
            output_dir=scratch,
            max_steps=config.steps,
            learning_rate=config.learning_rate,
            beta=config.beta,
            num_generations=config.num_generations,
            per_device_train_batch_size=config.num_generations * config.examples_per_step,
            max_completion_length=config.max_completion_tokens,
            temperature=config.temperature,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=config.seed,
            use_cpu=config.device == "cpu",
            bf16=config.bf16,
            dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward_function],
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[Progress()],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes to the run row, never to stdout
        progress(60, f"Training the policy on {len(train)} examples from {len({e.patient for e in train})} patients")
        trainer.train()
    if stopped[0]:
        raise Stopped()
    output_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return steps


def _freeze_all_but_last(model, layers: int) -> None:
    """Train only the last `layers` transformer layers and the final norm: on a CPU the backward
    pass then stops early, and a few hundred examples cannot overwrite what the model knows."""
    blocks = getattr(getattr(model, "model", None), "layers", None)
    if not layers or blocks is None or layers >= len(blocks):
        return
    trainable = {id(p) for block in blocks[-layers:] for p in block.parameters()}
    trainable |= {id(p) for p in model.model.norm.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) in trainable


# --- 4: validation ------------------------------------------------------------------------------------------


@dataclass
class ValidationRow:
    key: str
    patient: int
    rag: bool
    code: str  # the policy's edit
    best_fixed: str
    reward_initial: float
    reward_refined: float  # as used: the initial prompt's reward when the guard rejected the edit
    reward_best_fixed: float
    accepted: bool
    problems: list[dict]
    kinds: list[str]
    initial_prompt: str = ""
    refined_prompt: str = ""
    precision_initial: float | None = None  # key-item precision of the initial prompt's guidance (None: it names none)
    precision_refined: float | None = None  # as used
    claims_initial: int | None = None  # unsupported claims about her in the initial prompt's guidance
    claims_refined: int | None = None  # as used


class FixedEdit:
    """Chooses one edit for everyone, as a policy does per situation (the best fixed edit, when a run deploys it)."""

    def __init__(self, code: str):
        self.code = code

    def choose(self, situation: str) -> tuple[str, dict[str, float]]:
        return self.code, {self.code: 1.0}


def deployment_by_sources(
    train: Sequence[Example], table: dict[str, dict[str, float]], choices: dict[str, str], scorer: Scorer
) -> dict[str, dict]:
    """What a run deploys for each guidance-sources setting, decided on that setting's training examples only:
    {setting: {"best_fixed": fixed_edit_choice, "deployed": "policy" | "best_fixed", …}}.

    Guidance sources change what an edit does to the answer (without them, the edits that raised the reward made
    the model list care her physician had not named), and every request knows whether it gives sources, so the
    best fixed edit and the precision guardrail are taken per setting."""
    out = {}
    for setting, examples in by_sources(train).items():
        fixed = fixed_edit_choice(examples, table, scorer)
        out[setting] = {"best_fixed": fixed, **deployed_choice(examples, table, choices, fixed["code"], scorer)}
    return out


def deployed_overall(per_setting: dict[str, dict]) -> str:
    """ "policy" or "best_fixed" when every setting deploys the same; "by_sources" when they differ."""
    deployed = {block["deployed"] for block in per_setting.values()}
    return deployed.pop() if len(deployed) == 1 else "by_sources"


def edit_to_send(report: dict, sections: Sequence[dict], *, fixed: bool = False) -> str:
    """What a finished run sends for a prompt: "policy" (ask the policy) or the code of an edit.

    `fixed`: the run's best fixed edit, never the policy. A run that chose per guidance-sources setting
    (report["by_sources"]) answers for the prompt's own setting; an older run, for everyone."""
    block = (report.get("by_sources") or {}).get(sources_setting(sections))
    if block is None:
        block = report
    if not fixed and block.get("deployed", "policy") == "policy":
        return "policy"
    code = (block.get("best_fixed") or {}).get("code")
    if not code:
        raise ValueError("The run recorded no best fixed edit.")
    return code


def deployed_choice(
    train: Sequence[Example],
    table: dict[str, dict[str, float]],
    choices: dict[str, str],
    best_fixed: str,
    scorer: Scorer | None = None,
) -> dict:
    """What a run deploys, decided on its training examples only: the policy's per-patient choices when
    their mean reward there is at least the best fixed edit's and they keep key-item precision and grounding,
    else the best fixed edit (a policy that has not learned the template's gain is never sent to clinicians)."""
    policy_mean = statistics.fmean(table[e.key][choices[e.key]] for e in train)
    fixed_mean = statistics.fmean(table[e.key][best_fixed] for e in train)
    decision = {"policy_train_mean_reward": round(policy_mean, 4), "best_fixed_train_mean_reward": round(fixed_mean, 4)}
    reasons = []
    if scorer is not None:
        chosen = [scorer.used(e, choices[e.key]) for e in train]
        initial = [scorer.used(e, IDENTITY) for e in train]
        decision["policy_train_key_item_precision"] = key_item_precision(chosen)
        decision["policy_train_unsupported_claims"] = unsupported_claims_rate(chosen)
        reasons = guardrail_reasons(
            decision["policy_train_key_item_precision"],
            key_item_precision(initial),
            decision["policy_train_unsupported_claims"],
            unsupported_claims_rate(initial),
            claims_increase(train, scorer, lambda example: choices[example.key]),
        )
        if reasons:
            decision["policy_set_aside_because"] = reasons
    return {"deployed": "policy" if policy_mean >= fixed_mean and not reasons else "best_fixed", **decision}


def validate(
    validation: Sequence[Example],
    scorer: Scorer,
    choose: Callable[[Example], str],
    best_fixed: Callable[[Example], str],
    *,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[ValidationRow]:
    """Each held-out example answered with the initial prompt, the edit `choose` deploys for it and the best
    fixed edit for it."""
    rows = []
    for n, example in enumerate(validation, 1):
        if should_stop and should_stop():
            raise Stopped()
        code, fixed_code = choose(example), best_fixed(example)
        initial, refined = scorer.outcome(example, IDENTITY), scorer.outcome(example, code)
        fixed, used = scorer.used(example, fixed_code), scorer.used(example, code)
        rows.append(
            ValidationRow(
                key=example.key,
                patient=example.patient,
                rag=example.rag,
                code=code,
                best_fixed=fixed_code,
                reward_initial=initial.reward,
                reward_refined=refined.reward if refined.accepted else initial.reward,
                reward_best_fixed=fixed.reward,
                accepted=refined.accepted,
                problems=[p.as_dict() for p in refined.problems],
                kinds=example.kinds,
                initial_prompt=example.initial_text,
                refined_prompt=refined.prompt,
                precision_initial=initial.score.precision if initial.score else None,
                precision_refined=used.score.precision if used.score else None,
                claims_initial=initial.unsupported_claims,
                claims_refined=used.unsupported_claims,
            )
        )
        if on_progress:
            on_progress(n, len(validation))
    return rows


def validation_summary(rows: Sequence[ValidationRow], *, resamples: int = 1000, seed: int = 7) -> dict:
    """Paired differences on held-out patients with patient-clustered bootstrap 95% intervals:
    the policy against the initial prompt and against the best fixed edit, overall and per retrieval setting."""

    def block(subset):
        if not subset:
            return None
        return {
            "n": len(subset),
            "patients": len({r.patient for r in subset}),
            "reward_initial": round(statistics.fmean(r.reward_initial for r in subset), 4),
            "reward_refined": round(statistics.fmean(r.reward_refined for r in subset), 4),
            "reward_best_fixed": round(statistics.fmean(r.reward_best_fixed for r in subset), 4),
            "key_item_precision": {
                "initial": _mean_defined(r.precision_initial for r in subset),
                "refined": _mean_defined(r.precision_refined for r in subset),
            },
            "unsupported_claims": {
                "initial": _mean_defined(r.claims_initial for r in subset),
                "refined": _mean_defined(r.claims_refined for r in subset),
            },
            **paired_difference(
                [(r.patient, r.reward_refined - r.reward_initial) for r in subset], resamples=resamples, seed=seed
            ),
            "vs_best_fixed": paired_difference(
                [(r.patient, r.reward_refined - r.reward_best_fixed) for r in subset], resamples=resamples, seed=seed
            ),
            "best_fixed_vs_initial": paired_difference(
                [(r.patient, r.reward_best_fixed - r.reward_initial) for r in subset], resamples=resamples, seed=seed
            ),
        }

    summary = block(list(rows)) or {"n": 0, "patients": 0}
    summary["by_sources"] = {
        ("on" if rag else "off"): block([r for r in rows if r.rag == rag])
        for rag in (True, False)
        if any(r.rag == rag for r in rows)
    }
    return summary


def what_the_policy_learned(
    examples: Sequence[Example], choices: dict[str, str], table: dict[str, dict[str, float]], *, top: int = 3
) -> dict:
    """In the curators' words: how often each edit is chosen and its mean reward gain, and which
    edits the policy picks for which kinds of patient."""
    gains = edit_gains(table) if table else {}
    chosen = [choices[e.key] for e in examples if e.key in choices]
    edits = [
        {
            "code": e.code,
            "label": e.label,
            "chosen": chosen.count(e.code),
            "share": round(chosen.count(e.code) / len(chosen), 3) if chosen else 0.0,
            "mean_gain": gains.get(e.code),
        }
        for e in MENU
    ]
    by_kind: dict[str, list[str]] = {}
    for example in examples:
        if example.key in choices:
            for kind in example.kinds:
                by_kind.setdefault(kind, []).append(choices[example.key])
    kinds = []
    for kind, codes in sorted(by_kind.items(), key=lambda item: -len(item[1])):
        counts = sorted({c: codes.count(c) for c in set(codes)}.items(), key=lambda item: (-item[1], item[0]))[:top]
        kinds.append(
            {
                "kind": kind,
                "examples": len(codes),
                "edits": [{"code": c, "label": edit_named(c).label, "count": n} for c, n in counts],
            }
        )
    return {"menu": MENU_VERSION, "edits": edits, "kinds": kinds}
