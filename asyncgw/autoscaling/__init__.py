"""Queue-driven autoscaling (SPEC §9): the pure policy, the per-API loop that applies it, and
the interfaces of what it reads (metrics) and what it changes (a scale target). The scaler
service drives Kubernetes Deployments with it; ``asyncgw up`` drives its own worker pools."""

from asyncgw.autoscaling.autoscaler import Autoscaler, ScaleTarget
from asyncgw.autoscaling.policy import Decision, Limits, recommend

__all__ = ["Autoscaler", "Decision", "Limits", "ScaleTarget", "recommend"]
