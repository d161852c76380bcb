"""The base: request -> resolve -> build (installer) -> verify torch -> manifest -> publish; reuse; adopt."""
