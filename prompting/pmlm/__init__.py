"""The PMLM method in plain Python: no Django import anywhere in this package.

history    the de-identified PatientHistory a selector builds from the record
units      unit conversions and qualitative results
state      clinical state at the consultation (age, G/P, gestational age, latest values)
risk       WHO antenatal risk flags, each with its evidence
trends     changes over time and a short forecast
peers      the Surprise peer model, neighbours and cold start
peer_advice  peers' advice and ratings by the situation they were written in, and hers
composer   the personalised hard prompt: sections, provenance, token budget
deidentify the last guard: nothing identifying leaves in a prompt
"""
