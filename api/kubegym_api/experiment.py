"""The Experiment resource: a study over seeds and hyperparameters, answered by a report.

An Experiment expands ``template`` (a TrainingRun spec) into one TrainingRun per
configuration of ``search`` and seed of ``seeds``, runs at most ``parallelism`` of them at a
time, may stop clearly losing runs early (median stopping rule, ASHA or Hyperband over their
evaluation curves), optionally evaluates the finished models in a Benchmark, and ends with a
report Job that aggregates the runs across seeds (IQM with a bootstrap confidence interval) and
writes tables and plots to S3.

What the schema can know is checked at apply time (CEL); the names of an algorithm's
hyperparameters are stable-baselines3's constructor arguments, which the schema cannot know:
the operator checks them against :func:`kubegym_api.hyperparameters.allowed_hyperparameters`
before it creates any run.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict, JsonValue

from kubegym_api.base import Model, Seed, Statistic
from kubegym_api.cost import CostTotals
from kubegym_api.crd import PrinterColumn, ResourceKind
from kubegym_api.status import Condition, Phase, condition_list_field
from kubegym_api.tracking import TrackingSpec
from kubegym_api.trainingrun import ModelSelection, TrainingRunSpec
from kubegym_api.validation import immutable_rule, rules, validation_rule

PLURAL = "experiments"
KIND = "Experiment"

#: Most seeds per configuration, configurations, and runs (configurations x seeds) of one
#: Experiment: its status lists every run, and a status must stay well under etcd's limit.
MAX_SEEDS = 100
MAX_CONFIGURATIONS = 500
MAX_RUNS = 500
#: Most values one grid dimension may list, and most dimensions (bounds for the CEL cost).
MAX_GRID_VALUES = 64
MAX_GRID_DIMENSIONS = 32

_NEW_EXPERIMENT = "create a new Experiment instead (a new name, or delete and re-apply)"


def _immutable(field: str, *, optional: bool) -> JsonDict:
    return immutable_rule(
        field,
        "runs were created from it; only parallelism and suspend can change; " + _NEW_EXPERIMENT,
        optional=optional,
    )


class Seeds(Model):
    """The seeds every configuration is trained with: a count or an explicit list."""

    model_config = rules(
        validation_rule(
            "has(self.count) != has(self.values)",
            "set exactly one of seeds.count (seeds 0 .. count-1) and seeds.values (a list of seeds)",
            reason="FieldValueInvalid",
        )
    )

    count: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SEEDS,
        description="Train each configuration with seeds 0, 1, ..., count-1 (1 to 100).",
    )
    values: list[Seed] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SEEDS,
        description="Train each configuration with exactly these seeds (distinct, 0 to 2^32-1).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )

    def resolved(self) -> list[int]:
        """The seeds, in order."""
        if self.values is not None:
            return list(self.values)
        return list(range(self.count or 0))


class Distribution(enum.StrEnum):
    """How a random search draws one hyperparameter."""

    Uniform = "Uniform"
    LogUniform = "LogUniform"
    IntUniform = "IntUniform"
    Choice = "Choice"


class RandomParameter(Model):
    """The distribution of one hyperparameter in a random search."""

    # CEL cannot see ``values`` (its items have no type), so Choice's values are checked by
    # the model (the operator fails the Experiment with InvalidSpec) and not at apply time.
    model_config = rules(
        validation_rule(
            "self.distribution == 'Choice' ? !has(self.low) && !has(self.high) : has(self.low) && has(self.high)",
            "Uniform, LogUniform and IntUniform take low and high; Choice takes values only",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.low) || !has(self.high) || "
            "(self.distribution == 'IntUniform' ? self.low <= self.high : self.low < self.high)",
            "low must be below high (IntUniform: at most high)",
            field_path=".low",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "self.distribution != 'LogUniform' || !has(self.low) || self.low > 0.0",
            "LogUniform needs low > 0",
            field_path=".low",
            reason="FieldValueInvalid",
        ),
    )

    @model_validator(mode="after")
    def _values_for_choice_only(self) -> RandomParameter:
        if (self.distribution == Distribution.Choice) != (self.values is not None):
            raise ValueError("Choice takes values; Uniform, LogUniform and IntUniform take low and high")
        return self

    distribution: Distribution = Field(
        description="Uniform and LogUniform draw a float in [low, high) (LogUniform uniformly in log space, "
        "for learning rates); IntUniform an integer in [low, high]; Choice one of values."
    )
    low: float | None = Field(default=None, description="Lower bound (Uniform, LogUniform, IntUniform).")
    high: float | None = Field(default=None, description="Upper bound (Uniform, LogUniform, IntUniform).")
    values: list[Any] | None = Field(
        default=None, min_length=1, max_length=256, description="The candidates of a Choice (any JSON values)."
    )


class RandomSearch(Model):
    """Configurations drawn at random from per-hyperparameter distributions."""

    model_config = rules(
        validation_rule(
            "has(self.trials)",
            "search.random.trials is required: the trial budget, i.e. how many configurations to draw",
            field_path=".trials",
            reason="FieldValueRequired",
        ),
        validation_rule(
            "size(self.parameters) > 0",
            "search.random.parameters is empty: give at least one hyperparameter a distribution",
            field_path=".parameters",
            reason="FieldValueRequired",
        ),
    )

    trials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CONFIGURATIONS,
        description="The trial budget: how many configurations to draw (each trained with every seed). Required.",
    )
    seed: Seed = Field(default=0, description="Seed of the draw: the same seed draws the same configurations.")
    parameters: dict[str, RandomParameter] = Field(
        max_length=MAX_GRID_DIMENSIONS,
        description="Hyperparameter name (as stable-baselines3 spells it) to its distribution.",
    )


GridValues = Annotated[list[Any], Field(min_length=1, max_length=MAX_GRID_VALUES)]
#: Most members of a Population-Based Training population.
MAX_POPULATION = 64


class Sampler(enum.StrEnum):
    """Which Optuna sampler proposes an Experiment's configurations."""

    #: Tree-structured Parzen Estimator (Bergstra et al., 2011): models good and bad
    #: configurations separately; the default, strong on mixed spaces.
    TPE = "TPE"
    #: Gaussian-process Bayesian optimisation: sample-efficient for a few float or integer
    #: hyperparameters (needs torch where the operator runs).
    GP = "GP"
    #: Quasi-Monte Carlo (scrambled Sobol): spreads the trials evenly over the space.
    QMC = "QMC"
    #: Independent uniform draws, through Optuna (the baseline the others are judged against).
    Random = "Random"
    #: Every combination of Categorical choices, in random order, each once.
    Grid = "Grid"


class ParameterType(enum.StrEnum):
    """The type of one searched hyperparameter."""

    Float = "Float"
    Int = "Int"
    Categorical = "Categorical"


class SearchParameter(Model):
    """The range of one hyperparameter in an Optuna search."""

    # CEL cannot see ``choices`` (its items have no type), so whether a Categorical has them and a
    # Float or Int has none is checked by the model (the operator fails the Experiment with
    # InvalidSpec), not at apply time; an empty list is refused at apply (minItems).
    model_config = rules(
        validation_rule(
            "self.type == 'Categorical' ? !has(self.low) && !has(self.high) && !has(self.log) && !has(self.step) "
            ": has(self.low) && has(self.high)",
            "Float and Int take low and high (and optionally log or step); Categorical takes choices only",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.low) || !has(self.high) || self.low < self.high",
            "low must be below high",
            field_path=".low",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.log) || !self.log || !has(self.low) || self.low > 0.0",
            "a log scale needs low > 0",
            field_path=".low",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.step) || self.step > 0.0",
            "step must be above 0",
            field_path=".step",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.log) || !self.log || !has(self.step)",
            "log and step exclude each other: a log-scaled range cannot be stepped evenly",
            field_path=".step",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "self.type != 'Int' || ((!has(self.low) || double(int(self.low)) == self.low) && "
            "(!has(self.high) || double(int(self.high)) == self.high) && "
            "(!has(self.step) || double(int(self.step)) == self.step))",
            "an Int parameter takes whole numbers for low, high and step",
            reason="FieldValueInvalid",
        ),
    )

    @model_validator(mode="after")
    def _choices_for_categorical_only(self) -> SearchParameter:
        if (self.type == ParameterType.Categorical) != (self.choices is not None):
            raise ValueError("Categorical takes choices; Float and Int take low and high")
        if self.step is not None and self.step <= 0:
            raise ValueError("step must be above 0")
        return self

    type: ParameterType = Field(
        description="Float (a real number in [low, high]), Int (an integer in [low, high]) or Categorical "
        "(one of choices)."
    )
    low: float | None = Field(default=None, description="Lower bound, included (Float, Int).")
    high: float | None = Field(default=None, description="Upper bound, included (Float, Int).")
    log: bool | None = Field(
        default=None,
        description="Search in log space (Float, Int; needs low > 0): for learning rates, batch sizes, buffer sizes.",
    )
    step: float | None = Field(
        default=None,
        description="Discretisation step (Float, Int; not with log): values are low, low+step, ...",
    )
    choices: list[Any] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GRID_VALUES,
        description="The candidates of a Categorical (any JSON values: numbers, strings, lists such as net_arch).",
    )


class OptunaSearch(Model):
    """Configurations proposed one after the other by an Optuna sampler, each informed by the scores
    of the configurations finished before it."""

    model_config = rules(
        validation_rule(
            "size(self.parameters) > 0",
            "search.optuna.parameters is empty: give at least one hyperparameter a range",
            field_path=".parameters",
            reason="FieldValueRequired",
        ),
        validation_rule(
            "!has(self.sampler) || self.sampler != 'Grid' || "
            "self.parameters.all(k, self.parameters[k].type == 'Categorical')",
            "the Grid sampler needs every parameter Categorical (the grid's points are their choices)",
            field_path=".sampler",
            reason="FieldValueInvalid",
        ),
    )

    sampler: Sampler = Field(
        default=Sampler.TPE,
        description="TPE (the default), GP, QMC, Random or Grid; see docs/experiment.md for which to pick.",
    )
    trials: int = Field(
        ge=1,
        le=MAX_CONFIGURATIONS,
        description="The trial budget: how many configurations the sampler proposes (each trained with every seed).",
    )
    seed: Seed = Field(default=0, description="Seed of the sampler: the same seed and history propose the same.")
    startup_trials: int | None = Field(
        default=None,
        ge=0,
        le=MAX_CONFIGURATIONS,
        description="TPE and GP: configurations drawn at random before the model is used (Optuna's default: "
        "10 for TPE and GP). Lower it for small budgets.",
    )
    parameters: dict[str, SearchParameter] = Field(
        max_length=MAX_GRID_DIMENSIONS,
        description="Hyperparameter name (as stable-baselines3 spells it) to its range.",
    )


class Explore(enum.StrEnum):
    """How PBT explores one hyperparameter when a member copies another."""

    #: Float and Int: multiply by one of perturbFactors (kept in [low, high]); a Categorical of
    #: numbers: move to a neighbouring choice. With probability resampleProbability, resample.
    Perturb = "Perturb"
    #: Draw a fresh value from the range (with probability resampleProbability, else keep it).
    Resample = "Resample"


class PopulationParameter(SearchParameter):
    """The range of one hyperparameter in Population-Based Training, and how it is explored."""

    explore: Explore = Field(
        default=Explore.Perturb,
        description="Perturb (multiply a Float or Int by a perturb factor, move a Categorical of numbers to a "
        "neighbouring choice) or Resample (draw again from the range). Either resamples with probability "
        "resampleProbability. A Categorical of non-numbers can only be resampled.",
    )


class PopulationSearch(Model):
    """Population-Based Training (Jaderberg et al., 2017), synchronous: ``population`` members train
    side by side; every ``interval`` timesteps the bottom ``quantile`` of them continue from the
    newest model of a member of the top ``quantile`` with its hyperparameters explored."""

    model_config = rules(
        validation_rule(
            "size(self.parameters) > 0",
            "search.pbt.parameters is empty: give at least one hyperparameter a range to explore",
            field_path=".parameters",
            reason="FieldValueRequired",
        ),
        validation_rule(
            "!has(self.perturbFactors) || self.perturbFactors.all(f, f > 0.0)",
            "perturbFactors multiply a value: each must be above 0",
            field_path=".perturbFactors",
            reason="FieldValueInvalid",
        ),
    )

    population: int = Field(
        ge=2,
        le=MAX_POPULATION,
        description="Members trained side by side (2 to 64); each starts from a configuration drawn from parameters.",
    )
    interval: int = Field(
        ge=1,
        description="Timesteps between two exploit-and-explore steps: each member trains this many, then the "
        "population is ranked (by the objective's metric of each member's last segment).",
    )
    quantile: float = Field(
        default=0.25,
        ge=0.0,
        le=0.5,
        description="Fraction of the population replaced at each step (at least one member): the bottom quantile "
        "copies a member of the top quantile.",
    )
    resample_probability: float = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="Probability that exploring resamples a value instead of perturbing it.",
    )
    perturb_factors: list[float] = Field(
        default_factory=lambda: [0.8, 1.2],
        min_length=1,
        max_length=8,
        description="The factors a perturbed Float or Int is multiplied by (one drawn at random).",
    )
    seed: Seed = Field(default=0, description="Seed of the draws: the same seed and results decide the same.")
    parameters: dict[str, PopulationParameter] = Field(
        max_length=MAX_GRID_DIMENSIONS,
        description="Hyperparameter name (as stable-baselines3 spells it) to its range and how it is explored.",
    )


class SearchSpec(Model):
    """Which hyperparameter configurations to try: a full grid, a random sample, or an Optuna sampler.

    The grid's values are any JSON, which CEL cannot type, so "exactly one of grid and random"
    and "a non-empty grid" are OpenAPI bounds (properties counts) rather than CEL rules.
    """

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchSpec:
        if [self.grid, self.random, self.optuna, self.pbt].count(None) != 3:
            raise ValueError("set exactly one of search.grid, search.random, search.optuna and search.pbt")
        return self

    grid: dict[str, GridValues] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GRID_DIMENSIONS,
        description="Hyperparameter name (as stable-baselines3 spells it: learning_rate, n_steps, ...) to the "
        "values to try (at least one name, each with at least one value); every combination is one "
        "configuration. Values override template.hyperparameters. Exclusive with random and optuna.",
    )
    random: RandomSearch | None = Field(
        default=None, description="Draw `trials` configurations at random. Exclusive with grid and optuna."
    )
    optuna: OptunaSearch | None = Field(
        default=None,
        description="Let an Optuna sampler (TPE, GP, QMC, Random, Grid) propose `trials` configurations, "
        "each from the scores of those finished before it. Exclusive with grid, random and pbt.",
    )
    pbt: PopulationSearch | None = Field(
        default=None,
        description="Population-Based Training: a population trained in segments of `interval` timesteps, the "
        "bottom members continuing from the top members' models with explored hyperparameters. Exclusive "
        "with grid, random and optuna.",
    )


class EarlyStoppingRule(enum.StrEnum):
    """Which early-stopping rule judges the runs' evaluation curves."""

    #: Stop a run whose best evaluation is below the others' median at the same step (Vizier).
    Median = "Median"
    #: Asynchronous successive halving: at each rung keep the top 1/reductionFactor.
    ASHA = "ASHA"
    #: Several ASHA brackets with first rungs from minResource to template.totalTimesteps.
    Hyperband = "Hyperband"


#: The rules that judge runs at rungs of minResource x reductionFactor^k timesteps.
RUNG_RULES = frozenset({EarlyStoppingRule.ASHA, EarlyStoppingRule.Hyperband})


class EarlyStopping(Model):
    """Stop runs that are clearly losing, saving their remaining budget.

    Median reads minEvaluations and minRuns; ASHA reads minResource, reductionFactor and
    minEarlyStoppingRate; Hyperband reads minResource and reductionFactor (its largest resource is
    template.totalTimesteps). Fields a rule does not read are refused where they have no default.
    """

    model_config = rules(
        validation_rule(
            "!has(self.rule) || self.rule == 'Median' || has(self.minResource)",
            "earlyStopping.minResource is required for ASHA and Hyperband: the timesteps of the first rung, "
            "at which runs are first compared",
            field_path=".minResource",
            reason="FieldValueRequired",
        ),
        validation_rule(
            "(has(self.rule) && self.rule != 'Median') || !has(self.minResource)",
            "earlyStopping.minResource is for ASHA and Hyperband; the Median rule waits minEvaluations "
            "evaluations instead: remove minResource or pick rule ASHA or Hyperband",
            field_path=".minResource",
            reason="FieldValueForbidden",
        ),
        validation_rule(
            "(has(self.rule) && self.rule == 'ASHA') || !has(self.minEarlyStoppingRate) "
            "|| self.minEarlyStoppingRate == 0",
            "earlyStopping.minEarlyStoppingRate is for ASHA only (Hyperband sets it per bracket; Median has "
            "no rungs): remove it",
            field_path=".minEarlyStoppingRate",
            reason="FieldValueForbidden",
        ),
    )

    @model_validator(mode="after")
    def _fields_of_the_rule(self) -> EarlyStopping:
        if self.rule in RUNG_RULES and self.min_resource is None:
            raise ValueError("earlyStopping.minResource is required for ASHA and Hyperband")
        if self.rule == EarlyStoppingRule.Median and self.min_resource is not None:
            raise ValueError("earlyStopping.minResource is for ASHA and Hyperband, not Median")
        if self.rule != EarlyStoppingRule.ASHA and self.min_early_stopping_rate != 0:
            raise ValueError("earlyStopping.minEarlyStoppingRate is for ASHA only")
        return self

    rule: EarlyStoppingRule = Field(
        default=EarlyStoppingRule.Median,
        description="Median: after minEvaluations evaluations, stop a run whose best evaluation so far is below "
        "the median of the other runs' evaluations at the same timestep (Golovin et al., 2017); for few runs. "
        "ASHA: asynchronous successive halving (Li et al., 2018): at rung k (minResource x "
        "reductionFactor^(minEarlyStoppingRate+k) timesteps) a run continues only if its first evaluation at or "
        "after the rung is in the top 1/reductionFactor of the runs that reached it; for many configurations. "
        "Hyperband (Li et al., 2017): configurations are spread over brackets of ASHA with first rungs from "
        "minResource up to template.totalTimesteps, for when it is unclear how early a run can be judged.",
    )
    min_evaluations: int = Field(
        default=3,
        ge=1,
        le=10_000,
        description="Median only: evaluations a run makes before the rule may stop it (its grace period).",
    )
    min_runs: int = Field(
        default=3,
        ge=1,
        le=MAX_RUNS,
        description="Median only: other runs that must have reached the same timestep for the median to count.",
    )
    min_resource: int | None = Field(
        default=None,
        ge=1,
        description="ASHA and Hyperband (required there, refused for Median): timesteps of the first rung, "
        "where runs are first compared. At least template.evaluation.everySteps (an evaluation must happen by "
        "then) and below template.totalTimesteps.",
    )
    reduction_factor: int = Field(
        default=3,
        ge=2,
        le=100,
        description="ASHA and Hyperband (Median ignores it): each rung is this many times the previous one, "
        "and keeps the top 1/reductionFactor of the runs that reached it (at least one).",
    )
    min_early_stopping_rate: int = Field(
        default=0,
        ge=0,
        le=30,
        description="ASHA only: skip this many rungs, so the first rung is at minResource x "
        "reductionFactor^minEarlyStoppingRate timesteps (Hyperband sets it per bracket).",
    )


class FinalBenchmark(Model):
    """A final, larger evaluation of every run's model in one Benchmark."""

    episodes: int = Field(ge=1, le=10_000, description="Episodes per model (per benchmark seed).")
    deterministic: bool = Field(default=True, description="Evaluate the deterministic policy.")
    n_envs: int = Field(default=8, ge=1, le=256, description="Parallel environment copies of the evaluation.")
    checkpoint: ModelSelection | None = Field(
        default=None,
        description="Which model of every run the final Benchmark evaluates, and so what objective.metric "
        "Benchmark scores: final (the default), best (the run's best periodic evaluation; needs "
        "template.evaluation) or latest (its newest checkpoint). A run stopped early is evaluated at its best "
        "model for best, else at its newest checkpoint.",
    )


def _template_rules() -> list[JsonValue]:
    """The TrainingRun spec's own rules, minus its immutability rules: the whole template is
    immutable here, and their message (about a runner Job) would only confuse."""
    extra = TrainingRunSpec.model_config.get("json_schema_extra")
    found = extra.get("x-kubernetes-validations") if isinstance(extra, dict) else None
    rules_ = found if isinstance(found, list) else []
    return [r for r in rules_ if isinstance(r, dict) and "oldSelf" not in str(r.get("rule"))]


class TemplateSpec(TrainingRunSpec):
    """A TrainingRun spec: what every run of the Experiment trains."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _template_rules()})


class ObjectiveMetric(enum.StrEnum):
    """The number that scores one run of an Experiment."""

    #: Mean return of the run's final evaluation (``status.result.meanReward``).
    FinalReward = "FinalReward"
    #: Best mean return over the run's periodic evaluations and its final one.
    BestEvaluation = "BestEvaluation"
    #: Mean of the evaluation curve (periodic evaluations): rewards learning fast, not only well.
    MeanEvaluation = "MeanEvaluation"
    #: The run's model's score in the Experiment's final Benchmark (needs ``spec.benchmark``).
    Benchmark = "Benchmark"


class Direction(enum.StrEnum):
    Maximize = "Maximize"
    Minimize = "Minimize"


class Objective(Model):
    """How runs are scored and configurations compared."""

    metric: ObjectiveMetric = Field(
        default=ObjectiveMetric.FinalReward,
        description="Score of one run: FinalReward (its final evaluation's mean return), BestEvaluation, "
        "MeanEvaluation (mean of the evaluation curve) or Benchmark (its score in the final Benchmark). "
        "An early-stopped run scores its last evaluation for FinalReward.",
    )
    direction: Direction = Field(default=Direction.Maximize, description="Maximize or Minimize the score.")
    statistic: Statistic = Field(
        default=Statistic.IQM,
        description="Aggregate of a configuration's run scores across seeds: IQM (interquartile mean, robust "
        "to one lucky or unlucky seed), Mean or Median; reported with a 95% bootstrap confidence interval.",
    )


class ExperimentSpec(Model):
    """The study: what to train, over which seeds and hyperparameters, how many at a time."""

    model_config = rules(
        validation_rule(
            "!has(self.earlyStopping) || has(self.template.evaluation)",
            "earlyStopping compares evaluation curves: set template.evaluation (everySteps, episodes)",
            field_path=".earlyStopping",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.earlyStopping) || !has(self.earlyStopping.minResource) || !has(self.template.totalTimesteps) "
            "|| self.earlyStopping.minResource < self.template.totalTimesteps",
            "earlyStopping.minResource must be below template.totalTimesteps: the first rung has to come before "
            "the end of training, or no run is ever compared",
            field_path=".earlyStopping.minResource",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.earlyStopping) || !has(self.earlyStopping.minResource) || !has(self.template.evaluation) "
            "|| !has(self.template.evaluation.everySteps) "
            "|| self.earlyStopping.minResource >= self.template.evaluation.everySteps",
            "earlyStopping.minResource must be at least template.evaluation.everySteps: a run is judged at its "
            "first evaluation at or after the rung, and none happens before everySteps",
            field_path=".earlyStopping.minResource",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.earlyStopping) || !has(self.earlyStopping.rule) || self.earlyStopping.rule != 'Hyperband' "
            "|| has(self.template.totalTimesteps)",
            "earlyStopping rule Hyperband spreads its brackets up to template.totalTimesteps (its largest "
            "resource): set template.totalTimesteps",
            field_path=".template.totalTimesteps",
            reason="FieldValueRequired",
        ),
        validation_rule(
            "!has(self.objective) || !has(self.objective.metric) || self.objective.metric != 'Benchmark' "
            "|| has(self.benchmark)",
            "objective.metric Benchmark needs spec.benchmark (the episodes of the final evaluation)",
            field_path=".objective.metric",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.objective) || !has(self.objective.metric) || "
            "!(self.objective.metric in ['BestEvaluation', 'MeanEvaluation']) || has(self.template.evaluation)",
            "objective.metric BestEvaluation and MeanEvaluation read the evaluation curve: set template.evaluation",
            field_path=".objective.metric",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.template.tracking)",
            "set tracking on the Experiment (spec.tracking), not in its template: every trial logs as a child "
            "run of the Experiment's one parent run",
            field_path=".template.tracking",
            reason="FieldValueForbidden",
        ),
        validation_rule(
            "!has(self.benchmark) || !has(self.benchmark.checkpoint) || self.benchmark.checkpoint != 'best' "
            "|| has(self.template.evaluation)",
            "benchmark.checkpoint best is the model of the best periodic evaluation: set template.evaluation",
            field_path=".benchmark.checkpoint",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.search) || !has(self.search.optuna) || !has(self.objective) || !has(self.objective.metric) "
            "|| self.objective.metric != 'Benchmark'",
            "a sampler learns from each configuration's score as its runs finish, and Benchmark scores exist "
            "only after the final Benchmark: use objective.metric FinalReward, BestEvaluation or MeanEvaluation "
            "(spec.benchmark may still evaluate the models at the end)",
            field_path=".objective.metric",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.search) || !has(self.search.pbt) || "
            "(has(self.seeds.count) ? self.seeds.count == 1 : size(self.seeds.values) == 1)",
            "PBT's members each train with a seed of their own (member i: the seed plus i): give one seed; "
            "to repeat a whole population, create one Experiment per seed",
            field_path=".seeds",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.search) || !has(self.search.pbt) || !has(self.earlyStopping)",
            "PBT replaces losing members itself: remove earlyStopping",
            field_path=".earlyStopping",
            reason="FieldValueForbidden",
        ),
        validation_rule(
            "!has(self.search) || !has(self.search.pbt) || "
            "(has(self.template.totalTimesteps) && self.search.pbt.interval < self.template.totalTimesteps)",
            "PBT needs template.totalTimesteps above search.pbt.interval: the population is ranked every interval",
            field_path=".search.pbt.interval",
            reason="FieldValueInvalid",
        ),
        validation_rule(
            "!has(self.search) || !has(self.search.pbt) || !has(self.objective) || !has(self.objective.metric) "
            "|| self.objective.metric != 'Benchmark'",
            "PBT ranks its members as they train, and Benchmark scores exist only after the final Benchmark: use "
            "objective.metric FinalReward, BestEvaluation or MeanEvaluation",
            field_path=".objective.metric",
            reason="FieldValueInvalid",
        ),
        _immutable("template", optional=False),
        _immutable("seeds", optional=False),
        _immutable("tracking", optional=True),
        _immutable("search", optional=True),
        _immutable("earlyStopping", optional=True),
        _immutable("benchmark", optional=True),
        _immutable("objective", optional=False),
    )

    template: TemplateSpec = Field(
        description="The TrainingRun spec every run starts from. Each run's seed comes from `seeds` and its "
        "searched hyperparameters from `search` (template.seed and template.suspend are not used)."
    )
    seeds: Seeds = Field(description="Seeds per configuration: {count: 5} or {values: [1, 2, 3]}.")
    search: SearchSpec | None = Field(
        default=None,
        description="Hyperparameter configurations to try; without it the template is the one configuration.",
    )
    parallelism: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Most runs training at once (unfinished, not suspended). Mutable: lowering it suspends the "
        "newest runs beyond it (they resume from their checkpoints later).",
    )
    suspend: bool = Field(
        default=False,
        description="Suspend the Experiment: its unfinished runs are suspended (after a last checkpoint) and no "
        "new run starts; false resumes them. Mutable.",
    )
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description="Stop runs that are clearly losing, judged on their evaluation curves by the median "
        "stopping rule, ASHA or Hyperband (earlyStopping.rule); a stopped run is suspended with an EarlyStopped "
        "condition and keeps its checkpoints.",
    )
    benchmark: FinalBenchmark | None = Field(
        default=None,
        description="Evaluate every run's model in a final Benchmark before the report "
        "(when the Benchmark kind is installed).",
    )
    objective: Objective = Field(
        default_factory=Objective,
        description="How a run is scored and configurations are compared.",
        json_schema_extra={"default": {}},
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Experiment tracking of every trial: with mlflow, one parent MLflow run stands for the "
        "Experiment (tag kubegym.uid = its uid) and each trial logs as its child run (tag mlflow.parentRunId); "
        "experimentName defaults to <namespace>/<name> of the Experiment.",
    )


# --- Status: the operator's view of the runs, and the report Job's results ------------------


class RunPhase(enum.StrEnum):
    """Where one run of the Experiment is, as the Experiment sees it."""

    Waiting = "Waiting"
    Pending = "Pending"
    Running = "Running"
    Suspended = "Suspended"
    Succeeded = "Succeeded"
    Failed = "Failed"
    EarlyStopped = "EarlyStopped"
    Skipped = "Skipped"


#: Run phases that end a run's part in the Experiment.
DONE_RUN_PHASES = frozenset({RunPhase.Succeeded, RunPhase.Failed, RunPhase.EarlyStopped, RunPhase.Skipped})


class RunCounts(Model):
    """How many runs are in each phase."""

    total: int = Field(default=0, ge=0, description="Configurations x seeds.")
    waiting: int = Field(default=0, ge=0, description="Not created yet (waiting for a parallelism slot).")
    pending: int = Field(default=0, ge=0, description="Created, not training yet.")
    running: int = Field(default=0, ge=0, description="Training.")
    suspended: int = Field(default=0, ge=0, description="Suspended (Experiment suspended or over parallelism).")
    succeeded: int = Field(default=0, ge=0, description="Trained to the end.")
    failed: int = Field(default=0, ge=0, description="Failed.")
    early_stopped: int = Field(default=0, ge=0, description="Stopped by the early-stopping rule.")
    skipped: int = Field(
        default=0, ge=0, description="Never created: another run of the same configuration failed with a UserError."
    )


class RunStatus(Model):
    """One run (configuration x seed) of the Experiment."""

    name: str = Field(description="Name of the TrainingRun.")
    configuration: str = Field(description="Configuration id.")
    seed: int = Field(ge=0, description="Seed.")
    phase: RunPhase = Field(
        description="Waiting, Pending, Running, Suspended, Succeeded, Failed, EarlyStopped or Skipped."
    )
    timesteps: int | None = Field(default=None, ge=0, description="Timesteps trained so far.")
    last_evaluation: float | None = Field(default=None, description="Mean return of its latest evaluation.")
    final_reward: float | None = Field(default=None, description="Mean return of its final evaluation.")
    message: str | None = Field(default=None, max_length=1024, description="Why it failed, stopped or was skipped.")
    rung: int | None = Field(
        default=None,
        ge=0,
        description="ASHA and Hyperband: the highest rung (0 is the first) the run was promoted past. A promotion "
        "is final: the run is never judged again at that rung or below.",
    )
    bracket: int | None = Field(
        default=None,
        ge=0,
        description="Hyperband: the bracket of the run's configuration (every seed of a configuration shares it); "
        "bracket b's first rung is at minResource x reductionFactor^b timesteps.",
    )


class ConfigurationStatus(Model):
    """One configuration of the search."""

    id: str = Field(description="Configuration id (c0, c1, ...), part of its runs' names.")
    summary: str = Field(description="Its hyperparameters in one line.")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What it sets over the template.")
    score: float | None = Field(
        default=None,
        description="An Optuna search's view of it: the objective's statistic over its runs' scores, once every "
        "run of it is done (what the sampler learns from; the report's results are the final word).",
    )


class Budget(Model):
    """Timesteps planned, trained, and saved by early stopping."""

    total_timesteps: int | None = Field(default=None, ge=0, description="Planned: runs x totalTimesteps.")
    trained_timesteps: int = Field(default=0, ge=0, description="Trained so far, all runs.")
    saved_timesteps: int = Field(default=0, ge=0, description="Not trained because runs were stopped early.")


class StageStatus(Model):
    """A child of the Experiment's final stages."""

    name: str = Field(description="Object name.")
    phase: str | None = Field(default=None, description="Its phase.")


class ConfigurationResult(Model):
    """A configuration's runs aggregated across seeds (written by the report Job)."""

    rank: int = Field(ge=1, description="1 is the best; configurations without a score are not ranked.")
    configuration: str = Field(description="Configuration id (c0, c1, ...).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What this configuration sets.")
    runs: int = Field(ge=0, description="Runs with a score (failed runs have none).")
    failed: int = Field(default=0, ge=0, description="Runs that failed.")
    early_stopped: int = Field(default=0, ge=0, description="Runs stopped by the early-stopping rule.")
    score: float = Field(description="The objective's statistic (IQM by default) of the run scores.")
    ci_lower: float = Field(description="Lower end of the score's bootstrap confidence interval.")
    ci_upper: float = Field(description="Upper end of the score's bootstrap confidence interval.")
    mean: float = Field(description="Mean of the run scores.")
    std: float = Field(ge=0, description="Population standard deviation of the run scores.")
    min: float = Field(description="Lowest run score.")
    max: float = Field(description="Highest run score.")


class BestConfiguration(Model):
    """The winning configuration (written by the report Job)."""

    configuration: str = Field(description="Configuration id.")
    summary: str = Field(description="Its hyperparameters in one line (name=value, ...).")
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What it sets.")
    score: float = Field(description="Its score (the objective's statistic across seeds).")
    ci_lower: float = Field(description="Lower end of the score's confidence interval.")
    ci_upper: float = Field(description="Upper end of the score's confidence interval.")


class ExperimentReportFiles(Model):
    """Where an Experiment's report is in S3, and how its numbers were computed."""

    runs_csv: str | None = Field(default=None, description="Per-run table (CSV): seed, hyperparameters, scores.")
    runs_parquet: str | None = Field(default=None, description="The per-run table as Parquet.")
    configurations_csv: str | None = Field(default=None, description="Per-configuration aggregates (CSV).")
    curves_csv: str | None = Field(default=None, description="Every evaluation of every run (long format CSV).")
    learning_curves_png: str | None = Field(
        default=None, description="Evaluation return against timesteps: mean and CI band per configuration."
    )
    final_scores_png: str | None = Field(default=None, description="Run scores and the statistic with its CI.")
    population_png: str | None = Field(
        default=None,
        description="PBT: each member's evaluation curve across its segments, and its hyperparameter schedules.",
    )
    lineage_csv: str | None = Field(
        default=None, description="PBT: every segment of every member: what it copied, from where, with what."
    )
    report_json: str | None = Field(default=None, description="Index: settings, aggregates, best, versions.")
    statistic: Statistic | None = Field(default=None, description="Statistic of the aggregates.")
    confidence_level: float | None = Field(default=None, description="Coverage of the intervals.")
    method: str | None = Field(default=None, description="How the intervals were computed.")
    bootstrap_resamples: int | None = Field(default=None, description="Bootstrap resamples.")
    bootstrap_seed: int | None = Field(default=None, description="Seed of the bootstrap (for recomputation).")
    created_at: datetime | None = Field(default=None, description="When the report was written.")


class LineageStep(Model):
    """One segment of a PBT member: the run that trained it, where it started from, with what."""

    generation: int = Field(ge=0, description="0 for the first segment, then one more every interval.")
    step: int = Field(ge=0, description="Timesteps the member had trained when this segment started.")
    run: str = Field(description="The segment's TrainingRun.")
    source: str | None = Field(
        default=None, description="The TrainingRun whose final model it started from (none for generation 0)."
    )
    copied_from: str | None = Field(
        default=None, description="The member it copied (exploit), when it did not continue its own model."
    )
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="What the segment trained with.")
    score: float | None = Field(default=None, description="The segment's score, once it is done.")


class MemberStatus(Model):
    """One member of a PBT population: its hyperparameter schedule and whom it copied."""

    member: str = Field(description="Member id (m0, m1, ...), part of its runs' names.")
    seed: int = Field(ge=0, description="The seed it trains with.")
    lineage: list[LineageStep] = Field(default_factory=list, description="Its segments so far, in order.")


class ExperimentStatus(Model):
    """Observed state. The operator writes phase, conditions, counts, runs, budget and cost; the report Job
    writes results, best and report."""

    phase: Phase | None = Field(default=None, description="Pending, Running, Succeeded, Failed or Suspended.")
    reason: str | None = Field(default=None, max_length=1024, description="CamelCase cause of the phase.")
    message: str | None = Field(default=None, max_length=32768, description="Human-readable details of the phase.")
    conditions: list[Condition] = condition_list_field("Running, Suspended, Succeeded and Failed, with reasons.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed for."
    )
    start_time: datetime | None = Field(default=None, description="When the first run was created.")
    completion_time: datetime | None = Field(default=None, description="When the Experiment succeeded or failed.")
    completions: str | None = Field(default=None, description="Runs done / runs in total (printer column Runs).")
    counts: RunCounts | None = Field(default=None, description="Runs by phase.")
    configurations: list[ConfigurationStatus] = Field(
        default_factory=list, max_length=MAX_CONFIGURATIONS, description="The configurations of the search."
    )
    runs: list[RunStatus] = Field(
        default_factory=list, max_length=MAX_RUNS, description="Every run, in creation order."
    )
    budget: Budget | None = Field(default=None, description="Timesteps planned, trained and saved.")
    cost: CostTotals | None = Field(
        default=None, description="The sum of its runs' status.cost: CPU-seconds and GPU-seconds held and used."
    )
    estimated_remaining_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Seconds of training left: the timesteps its runs have left (planned, less trained, less "
        "what early stopping saved) over the summed throughput of the runs training now; the final Benchmark "
        "and report are not in it. 0 once Succeeded, absent while unknown.",
    )
    population: list[MemberStatus] = Field(
        default_factory=list,
        max_length=MAX_POPULATION,
        description="PBT: every member's lineage (segments, what each copied and trained with, scores).",
    )
    benchmark: StageStatus | None = Field(default=None, description="The final Benchmark, if any.")
    report_job: str | None = Field(default=None, description="Name of the report Job.")
    results: list[ConfigurationResult] = Field(
        default_factory=list,
        max_length=MAX_CONFIGURATIONS,
        description="Per-configuration aggregates across seeds, best first (written by the report Job).",
    )
    best: BestConfiguration | None = Field(default=None, description="The best configuration (report Job).")
    report: ExperimentReportFiles | None = Field(default=None, description="The report's files in S3 (report Job).")


EXPERIMENT = ResourceKind(
    kind=KIND,
    plural=PLURAL,
    singular="experiment",
    short_names=("exp",),
    description="Experiment trains a template TrainingRun over seeds x hyperparameter configurations, at most "
    "`parallelism` at a time, stops losing runs early, and reports per-configuration IQM with bootstrap "
    "confidence intervals, tables and plots in S3.",
    spec_model=ExperimentSpec,
    status_model=ExperimentStatus,
    printer_columns=(
        PrinterColumn("Phase", "string", ".status.phase", "Lifecycle phase."),
        PrinterColumn("Runs", "string", ".status.completions", "Runs done / total."),
        PrinterColumn("Running", "integer", ".status.counts.running", "Runs training now."),
        PrinterColumn("Best", "string", ".status.best.summary", "Best configuration's hyperparameters."),
        PrinterColumn("Score", "number", ".status.best.score", "Best configuration's score (IQM across seeds)."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Reason", "string", ".status.reason", "Cause of the phase.", priority=1),
        PrinterColumn(
            "ETA(s)", "integer", ".status.estimatedRemainingSeconds", "Seconds of training left.", priority=1
        ),
        PrinterColumn("Config", "string", ".status.best.configuration", "Best configuration id.", priority=1),
        PrinterColumn("CI-Low", "number", ".status.best.ciLower", "Lower end of the best score's CI.", priority=1),
        PrinterColumn("CI-High", "number", ".status.best.ciUpper", "Upper end of the best score's CI.", priority=1),
        PrinterColumn("Stopped", "integer", ".status.counts.earlyStopped", "Runs stopped early.", priority=1),
        PrinterColumn("Failed", "integer", ".status.counts.failed", "Runs failed.", priority=1),
    ),
)
