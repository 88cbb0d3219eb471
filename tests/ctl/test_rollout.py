"""rollout status's reading of a Deployment (kubectl's DeploymentStatusViewer)."""
import pytest

from ctl.discovery import UsageError
from ctl.rollout import deployment_status


def deploy(generation=2, observed=2, replicas=3, updated=3, total=3, available=3, conditions=()):
    return {"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "conditions": list(conditions)}}


@pytest.mark.parametrize("d, message, done", [
    (deploy(generation=3), "Waiting for deployment spec update to be observed...", False),
    (deploy(updated=1), 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
     False),
    (deploy(total=5), 'Waiting for deployment "web" rollout to finish: 2 old replicas are pending termination...',
     False),
    (deploy(available=2), 'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
     False),
    (deploy(), 'deployment "web" successfully rolled out', True),
])
def test_progress_lines(d, message, done):
    assert deployment_status(d) == (message, done)


def test_exceeded_progress_deadline_fails():
    d = deploy(updated=1, conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    with pytest.raises(UsageError, match='deployment "web" exceeded its progress deadline'):
        deployment_status(d)
