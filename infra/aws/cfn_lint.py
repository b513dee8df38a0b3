"""cfn-lint's configuration for a gpu render: the override spec that teaches it AcceleratorConfig.

cfn-lint 1.58.0, the newest this project's tools resolve, lacks the documented
`AcceleratorConfig` of `AWS::Lambda::Function` and reports it as E3002. Rather than ignore the
rule, the repository keeps an override spec (infra/aws/cfnlint/override-spec.json) that adds the
property as CloudFormation's reference documents it (ARCHITECTURE.md, "The gpu backend on AWS").
"""

from __future__ import annotations

import shutil
from pathlib import Path

CFN_LINT_OVERRIDE_SPEC = Path(__file__).resolve().parent / "cfnlint" / "override-spec.json"
CFN_LINT_CONFIG = ".cfnlintrc.yaml"


def write_cfn_lint_config(out_dir: Path) -> Path:
    """Copy the override spec into out_dir and point out_dir's .cfnlintrc.yaml at it.

    cfn-lint reads .cfnlintrc.yaml from the directory it runs in, and so does `sam validate
    --lint`, which has no flag for an override spec. A relative path there is relative to that
    directory, so the spec travels with the template.
    """
    shutil.copy2(CFN_LINT_OVERRIDE_SPEC, out_dir / CFN_LINT_OVERRIDE_SPEC.name)
    config = out_dir / CFN_LINT_CONFIG
    config.write_text(f"# Written by `mbs render` for a gpu plan: {CFN_LINT_OVERRIDE_SPEC.name} "
                      f"teaches cfn-lint AcceleratorConfig.\n"
                      f"override_spec: {CFN_LINT_OVERRIDE_SPEC.name}\n", encoding="utf-8")
    return config
