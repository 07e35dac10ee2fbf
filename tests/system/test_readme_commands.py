"""Every command the README shows exists, with the flags it shows: each
script, each make target, and each ``--flag`` in the script's argparse
definitions (a renamed flag or script shows up here, not in a user's
terminal)."""
import os.path as osp
import re

from helpers import REPO_ROOT

README = osp.join(REPO_ROOT, 'README.md')
# A script as the README runs it: `python path.py`, `bash path.sh` or a
# bare `tools/x.sh`.
SCRIPT = re.compile(
    r'(?:^|\s)(?:python |bash )?((?:tools|demo)/[\w/]+\.(?:py|sh))')
FLAG = re.compile(r'\s(--[a-z][\w-]*)')


def shell_lines(text: str) -> list:
    """The command lines of the README's bash blocks, comments dropped."""
    lines, in_block = [], False
    for line in text.splitlines():
        if line.startswith('```'):
            in_block = line.strip() in ('```bash', '```shell')
            continue
        if in_block:
            command = line.split('#', 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def test_readme_commands_exist_with_their_flags():
    with open(README, encoding='utf-8') as f:
        lines = shell_lines(f.read())
    with open(osp.join(REPO_ROOT, 'Makefile'), encoding='utf-8') as f:
        targets = set(re.findall(r'^([\w-]+):', f.read(), flags=re.M))
    checked = 0
    for line in lines:
        if line.startswith('make '):
            assert line.split()[1] in targets, line
            checked += 1
            continue
        match = SCRIPT.search(line)
        if match is None:
            continue
        script = osp.join(REPO_ROOT, match.group(1))
        assert osp.isfile(script), f'README runs a missing script: {line}'
        with open(script, encoding='utf-8') as f:
            source = f.read()
        for flag in FLAG.findall(line[match.end():]):
            if script.endswith('.sh'):
                # A launcher passes its extra flags on to train.py/test.py.
                target = 'train.py' if 'train' in script else 'test.py'
                with open(osp.join(REPO_ROOT, 'tools', target)) as f:
                    source += f.read()
            assert f"'{flag}'" in source, \
                f'{match.group(1)} defines no {flag}: {line}'
        checked += 1
    # The two commands and the usage block's scripts.
    assert checked >= 8
