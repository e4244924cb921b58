"""A capsule like the lab's dynamic-foraging "MLE fitting", for result-access's reader.

aind-analysis-arch-result-access's ``get_mle_model_fitting`` reads records by
``code.parameters.analysis_name`` ("MLE fitting") and ``analysis_tag``, projects
``output_parameters`` fields (``subject_id``, ``session_date``, ``nwb_name``,
``additional_info`` as the status, ``fitting_results``) and reads each result folder's
``docDB_mle_fitting.json`` for the latent variables. This capsule writes exactly those,
from a small Q-learning model run on choices drawn from the session's name.
"""

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from analysis_wrapper import AnalysisOutputs, AnalysisParameters, Job, run_analysis_jobs


class FitParameters(AnalysisParameters):
    """One model fit of one session."""

    analysis_name: str = Field(default="MLE fitting", description="Name of the analysis.")
    agent_alias: str = Field(default="QLearning_L1F0_softmax", description="The model fitted.")
    learning_rate: float = Field(default=0.3, gt=0, le=1, description="The model's alpha.")
    n_trials: int = Field(default=40, gt=0, description="Trials simulated per session.")


class FitSettings(BaseModel):
    agent_alias: str


class FittingResults(BaseModel):
    fit_settings: FitSettings
    n_trials: int
    log_likelihood: float
    prediction_accuracy: float
    k_model: int
    AIC: float
    BIC: float
    params: dict[str, float]


class FitOutputs(AnalysisOutputs):
    """The record's ``output_parameters``, named as result-access reads them."""

    nwb_name: str
    subject_id: str
    session_date: str
    additional_info: str
    fitting_results: FittingResults


def q_learning(choices: list[int], rewards: list[int], alpha: float) -> list[list[float]]:
    """Both sides' values before each trial and after the last (n_trials + 1 columns)."""
    q = [[0.5], [0.5]]
    for choice, reward in zip(choices, rewards, strict=True):
        for side in (0, 1):
            value = q[side][-1]
            q[side].append(value + alpha * (reward - value) if side == choice else value)
    return q


def run_analysis(job: Job, parameters: FitParameters, results_dir: Path) -> FitOutputs:
    session = job.asset_name[0]  # e.g. ecephys_612345_2025-03-14_10-02-11
    _, subject_id, session_date, _ = session.split("_", 3)
    draw = random.Random(hashlib.sha256(session.encode()).digest())
    choices = [draw.randint(0, 1) for _ in range(parameters.n_trials)]
    rewards = [draw.randint(0, 1) for _ in range(parameters.n_trials)]
    q = q_learning(choices, rewards, parameters.learning_rate)
    # The model predicts the side of higher value; ties count as a miss.
    hits = sum(q[c][t] > q[1 - c][t] for t, c in enumerate(choices))
    log_likelihood = -float(parameters.n_trials)
    fit: dict[str, Any] = {
        "fit_settings": {
            "agent_alias": parameters.agent_alias,
            "fit_choice_history": choices,
            "fit_reward_history": rewards,
        },
        "fitted_latent_variables": {"q_value": q},
    }
    (results_dir / "docDB_mle_fitting.json").write_text(json.dumps(fit), encoding="utf-8")
    return FitOutputs(
        nwb_name=f"{session}.nwb",
        subject_id=subject_id,
        session_date=session_date,
        additional_info="success",
        fitting_results=FittingResults(
            fit_settings=FitSettings(agent_alias=parameters.agent_alias),
            n_trials=parameters.n_trials,
            log_likelihood=log_likelihood,
            prediction_accuracy=hits / parameters.n_trials,
            k_model=1,
            AIC=2 - 2 * log_likelihood,
            BIC=1 - 2 * log_likelihood,
            params={"learning_rate": parameters.learning_rate},
        ),
    )


if __name__ == "__main__":
    run_analysis_jobs(run_analysis, parameters_model=FitParameters, outputs_model=FitOutputs)
