"""``python -m casework create-admin --email E [--name N] [--password-stdin]``: production's first admin (and any
admin after it), with a password typed twice at a prompt or read from standard input."""

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from agency_chassis.mongo import mongo_client
from casework.access import StaffAccess
from casework.accounts import AccountProblem, EmailTaken
from casework.passwords import PasswordProblem, check_new_password
from casework.roles import Role
from casework.settings import CaseworkSettings


class NoPassword(Exception):
    """No usable password was given: the two entries differ, or standard input was empty."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m casework", description="casework's administration commands")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an admin account (refuses an email already in use)")
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="Admin")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    return parser


def read_password(from_stdin: bool, stdin: TextIO, prompt: Callable[[str], str] = getpass.getpass) -> str:
    if from_stdin:
        password = stdin.readline().rstrip("\r\n")
        if not password:
            raise NoPassword("standard input held no password")
        return password
    password = prompt("Password: ")
    if prompt("Password again: ") != password:
        raise NoPassword("the two passwords differ")
    return password


async def create_admin(settings: CaseworkSettings, email: str, name: str, password: str) -> str:
    """The new admin's id; raises EmailTaken, AccountProblem or PasswordProblem."""
    client = mongo_client(settings)
    try:
        access = StaffAccess(settings)
        await access.open(client, settings.mongodb_db)
        account, _ = await access.create_account(email=email, name=name, role=Role.ADMIN, password=password)
        await access.audit.record(
            actor=None,
            action="account_created",
            subject=account.id,
            from_address="command line",
            detail={"role": "admin", "via": "create-admin"},
        )
        await access.close()
        return account.id
    finally:
        await client.close()


def main(
    argv: Sequence[str],
    settings: CaseworkSettings,
    *,
    stdin: TextIO = sys.stdin,
    prompt: Callable[[str], str] = getpass.getpass,
) -> int:
    argv = list(argv)
    if not argv or argv[0].startswith("-"):  # called with the command's own arguments only
        argv = ["create-admin", *argv]
    arguments = _parser().parse_args(argv)
    try:
        password = read_password(arguments.password_stdin, stdin, prompt)
        check_new_password(password)
        account_id = asyncio.run(create_admin(settings, arguments.email, arguments.name, password))
    except NoPassword as problem:
        print(f"create-admin: {problem}; nothing was created", file=sys.stderr)
        return 2
    except PasswordProblem as problem:
        print(f"create-admin: the password must have {problem}; nothing was created", file=sys.stderr)
        return 2
    except EmailTaken:
        print("create-admin: an account with this email already exists; nothing was created", file=sys.stderr)
        return 1
    except AccountProblem as problem:
        print(f"create-admin: the {problem} is not valid; nothing was created", file=sys.stderr)
        return 2
    print(f"created admin {account_id} ({arguments.email.strip().lower()})")
    return 0
