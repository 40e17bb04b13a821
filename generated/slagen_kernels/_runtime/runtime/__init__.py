"""What compiled ops and generated packages import at run time: torch and triton only (plus slagen.spec,
which is pure Python). Never jinja2, sqlalchemy, optuna, click or rich."""
