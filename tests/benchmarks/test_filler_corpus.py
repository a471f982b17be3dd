"""benchmarks/filler_corpus.py: French text from man pages and HTML help pages, cut into
passages, and held-out articles kept out of the filler."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(_ROOT / "benchmarks"))
_SPEC = importlib.util.spec_from_file_location("filler_corpus",
                                               _ROOT / "benchmarks" / "filler_corpus.py")
filler = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(filler)

MAN_PAGE = r""".\" Copyright
.TH LS 1 "2023" "GNU" "Commandes"
.SH NOM
ls \- Afficher le contenu d'un répertoire
.SH DESCRIPTION
Afficher les informations sur les \fBfichiers\fR (du répertoire courant par défaut).
.PP
.B \-a
ne pas ignorer les entrées commençant par \(aq.\(aq
"""


def test_roff_paragraphs_remove_markup_and_comments() -> None:
    # A heading starts a paragraph and leads it; fonts, escapes and comments are removed
    assert filler.roff_paragraphs(MAN_PAGE) == [
        "NOM ls - Afficher le contenu d'un répertoire",
        "DESCRIPTION Afficher les informations sur les fichiers (du répertoire courant par "
        "défaut).", "-a ne pas ignorer les entrées commençant par '.'"]


def test_html_paragraphs_skip_navigation_scripts_and_code() -> None:
    parser = filler._Paragraphs()
    parser.feed("<html><head><title>Barre Rechercher</title><script>var x;</script></head>"
                "<body><nav>Menu</nav><h1>Barre</h1><p>La barre d'outils <span>Rechercher"
                "</span> peut être utilisée.</p><pre>ls -la</pre><li>Un élément</li></body>")
    assert parser.title == "Barre Rechercher"
    assert parser.paragraphs == ["Barre", "La barre d'outils Rechercher peut être utilisée.",
                                 "Un élément"]


def test_doc_passages_keep_french_paragraphs_in_100_word_passages() -> None:
    french = "Le fichier de la configuration est lu par le programme et les options sont " * 3
    english = "The file of the configuration is read by the program and the options are " * 3
    # Given 10 French paragraphs of 42 words, 10 English ones and a short one
    passages = filler.doc_passages([french] * 10 + [english] * 10 + ["trop court"])
    # Then the 420 French words give 4 passages of 100 (the last 20 are too few for one)
    assert [len(p.split()) for p in passages] == [100, 100, 100, 100]
    assert " ".join(passages).split() == (" ".join([french] * 10)).split()[:400]


def test_excluded_titles_come_from_positive_passages(tmp_path: Path) -> None:
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps([{"positive_ctxs": [{"title": "Guerre_de_Cent_Ans", "text": "x"}],
                                "hard_negative_ctxs": [{"title": "Autre", "text": "y"}]}]))
    assert filler.excluded_titles([str(dev)]) == {"Guerre de Cent Ans"}
