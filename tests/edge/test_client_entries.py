"""The per-IDE install rule and the ``/clients/`` page, as pure functions (no sockets)."""

from __future__ import annotations

from twisted.trial import unittest

from ct.edge.downloads import clients_page, is_install_entry


class InstallEntryTests(unittest.TestCase):
    def test_one_entry_file_per_ide(self):
        counted = [("eclipse", "content.jar"), ("eclipse", "content.xml.xz"),
                   ("eclipse", "content.xml"), ("eclipse", "codetogether-site-1.0.zip"),
                   ("intellij", "codetogether-intellij-1.0.zip"), ("intellij", "ct.jar"),
                   ("vscode", "codetogether-1.0.vsix")]
        not_counted = [("eclipse", "p2.index"), ("eclipse", "artifacts.jar"),
                       ("eclipse", "artifacts.xml.xz"), ("eclipse", "compositeContent.jar"),
                       ("eclipse", "compositeArtifacts.xml"), ("eclipse", "codetogether_1.0.jar"),
                       ("intellij", "updatePlugins.xml"), ("vscode", "README.md"),
                       (None, "codetogether-1.0.vsix"), ("other", "content.jar")]
        self.assertEqual([pair for pair in counted if not is_install_entry(*pair)], [])
        self.assertEqual([pair for pair in not_counted if is_install_entry(*pair)], [])


class PageTests(unittest.TestCase):
    def test_names_are_escaped_and_urls_quoted(self):
        page = clients_page({"vscode": [('a"<i>.vsix', 'vscode/a"<i>.vsix')]}).decode()
        self.assertIn('<a href="/clients/vscode/a%22%3Ci%3E.vsix">a&quot;&lt;i&gt;.vsix</a>', page)
        self.assertIn("<h2>Eclipse</h2><p>none available</p>", page)

    def test_unset_and_empty_directories_say_nothing_is_configured(self):
        self.assertIn(b"Set <code>CT_CLIENTS_DIR</code>", clients_page(None))
        self.assertIn(b"holds none", clients_page({}))
