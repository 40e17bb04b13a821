"""A copy of the runtime of slagen 0.1.0 (its modules byte for byte), so that this package needs torch and triton only. Do not edit: rebuild with `slagen build`."""
