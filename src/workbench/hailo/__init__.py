"""workbench.hailo: the Hailo-8 side of the workbench.

``alls`` model scripts, ``bundle`` (the compile bundle written on every machine), ``compile`` (the
Dataflow Compiler's ClientRunner path, only where ``hailo_sdk_client`` imports), ``dfc_log`` (what the
DFC log says), ``runtime`` (HailoRT on a device), ``cli_tools`` (hailortcli runs and parsing) and
``hef_import`` (a HEF built elsewhere). Hailo packages are imported inside functions, so importing
this package never needs them.
"""

from workbench.hailo.alls import make_model_script
from workbench.hailo.compile import dfc_available
from workbench.hailo.runtime import HailoRTRunner, hailort_available

__all__ = ["make_model_script", "dfc_available", "HailoRTRunner", "hailort_available"]
