"""The files a user reads first: LICENSE (the Apache-2.0 text setup.py
declares), CHANGELOG.md, CITATION.bib, and the links of the user guides
(every relative link and #anchor resolves)."""
import os.path as osp
import re

import pytest

from helpers import REPO_ROOT

#: Pages whose relative links are checked.
GUIDES = ('docs/get_started.md', 'docs/faq.md',
          'docs/tutorials/your_own_dataset.md', 'CHANGELOG.md')
APACHE_SECTIONS = ('Definitions', 'Grant of Copyright License',
                   'Grant of Patent License', 'Redistribution',
                   'Submission of Contributions', 'Trademarks',
                   'Disclaimer of Warranty', 'Limitation of Liability',
                   'Accepting Warranty or Additional Liability')


def read(path):
    with open(osp.join(REPO_ROOT, path), encoding='utf-8') as file:
        return file.read()


def test_license_is_the_apache_2_text_setup_py_declares():
    text = read('LICENSE')
    assert text.split()[:5] == ['Apache', 'License', 'Version', '2.0,',
                                'January']
    for number, title in enumerate(APACHE_SECTIONS, start=1):
        assert f'{number}. {title}.' in text, title
    assert 'END OF TERMS AND CONDITIONS' in text
    assert "license='Apache License 2.0'" in read('setup.py')


def test_changelog_has_the_package_version_and_an_unreleased_section():
    namespace = {}
    exec(read('mmseg_semi/version.py'), namespace)
    text = read('CHANGELOG.md')
    headings = re.findall(r'^## (.+)$', text, re.M)
    assert headings[0] == 'Unreleased'
    assert all(namespace['__version__'] in h for h in headings[1:])


def bib_entries(text):
    """(type, key, {field: value}) of each ``@type{key, field = {...}}``."""
    entries = []
    for match in re.finditer(r'@(\w+)\{([^,]+),(.*?)\n\}', text, re.S):
        fields = dict(
            re.findall(r'^\s*(\w+)\s*=\s*\{(.*)\},?$', match.group(3), re.M))
        entries.append((match.group(1), match.group(2), fields))
    return entries


def test_citation_cites_project_methods_and_data():
    text = read('CITATION.bib')
    assert text.count('{') == text.count('}')
    entries = bib_entries(text)
    assert len(entries) == text.count('\n@') + text.startswith('@')
    keys = [key for _, key, _ in entries]
    assert len(set(keys)) == len(keys)
    for _, key, fields in entries:
        assert {'title', 'author', 'year'} <= set(fields), key
    by_key = {key: fields for _, key, fields in entries}
    assert 'mmseg-semi' in by_key['mmseg_semi2026']['title']
    assert 'Unreliable Pseudo-Labels' in by_key['wang2022u2pl']['title']
    assert 'CVPR' in by_key['wang2022u2pl']['booktitle']
    assert by_key['zhang2021rml']['journal'].endswith('arXiv:2106.00609')
    assert by_key['brostow2009camvid']['journal'] == \
        'Pattern Recognition Letters'


def heading_anchors(markdown):
    """GitHub's anchors of a page's headings."""
    anchors = set()
    markdown = re.sub(r'```.*?```', '', markdown, flags=re.S)
    for heading in re.findall(r'^#+ (.+)$', markdown, re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower())
        anchors.add(slug.replace(' ', '-'))
    return anchors


@pytest.mark.parametrize('page', GUIDES)
def test_relative_links_and_anchors_resolve(page):
    text = read(page)
    # Code blocks hold commands and configs, not links.
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    links = re.findall(r'\]\(([^)\s]+)\)', text)
    assert links, page
    for link in links:
        if re.match(r'[a-z]+://', link):
            continue
        target, _, anchor = link.partition('#')
        path = osp.normpath(osp.join(REPO_ROOT, osp.dirname(page), target)) \
            if target else osp.join(REPO_ROOT, page)
        assert osp.exists(path), f'{page}: {link} does not exist'
        if anchor:
            with open(path, encoding='utf-8') as file:
                assert anchor in heading_anchors(file.read()), \
                    f'{page}: {link} has no heading #{anchor}'
