"""The results store: one SQLite file that every finished run lands in, exactly once.

A 25-seed BERT-large study costs GPU hours, so the store is built never to recompute or
lose a finished run:

* each ``put`` is one transaction (a process killed mid-write leaves the whole row or
  nothing), and an existing key is never overwritten unless asked (or its record is damaged:
  the damaged bytes are kept aside first);
* WAL mode plus a long busy timeout lets many pytest-xdist workers write concurrently;
* ``get_or_compute`` claims a run with an OS file lock, so two processes that want the
  same missing run train it once, and a crashed holder releases its claim automatically;
* a file that is not our store is refused without being touched.

Rows keep the full ``RunResult.to_json()`` record; the other columns are copies of it
for filtering in SQL.  The files runs travel in between stores are :mod:`stabench.exchange`'s.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import os
import re
import shlex
import sqlite3
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, TypeVar

from .environment import ALL_KEY_FIELDS, KEY_FIELDS, key_fields
from .recipes import Recipe, canonical_name, overrides_error, version_labels
from .result import NewerRecord, RunResult, folder_name, key_of_record, run_key
from .warn import warn

# Marks a SQLite file as a stabench store (PRAGMA application_id; "STBN").
APPLICATION_ID = 0x5354424E
BUSY_TIMEOUT_S = 60.0
SHORT_KEY = 10  # characters of a run key that tables show; any unique start of 4 or more finds the run
SHORT_HASH = 8  # characters of a recipe hash that tables and messages show

# Copied out of the record for filtering (and an export's CSV columns); order matters for the INSERT.
COLUMNS = ("key", "task_name", "model_name", "recipe_name", "recipe_hash", "seed",
           *KEY_FIELDS, "failed", "collapsed", "diverged", "score", "finished_at")

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class StoreError(Exception):
    """The store cannot do what was asked; the message says which file and why."""


class DamagedRunsLeftOut(UserWarning):
    """A listing or export went on without the stored records that no longer parse (``keys``)."""

    def __init__(self, path: Path, keys: Sequence[str]):
        super().__init__(path, list(keys))  # its args make it again: a copy, a pickle (xdist)
        self.path, self.keys = path, list(keys)

    def __str__(self) -> str:
        more = f" and {len(self.keys) - 3} more" if len(self.keys) > 3 else ""
        return (f"{self.path}: left out {len(self.keys)} unreadable stored run(s), {', '.join(self.keys[:3])}{more}: "
                f"rerunning their study trains them again (`stabench runs --show KEY` says what is wrong)")


class UnreadableRun(StoreError):
    """A stored record that no longer parses (a damaged disk, a hand edit): the run is lost."""

    def __init__(self, path: Path, key: str, reason: Exception):
        self.path, self.key, self.reason = path, key, reason
        super().__init__(f"{path}: stored run {key} is unreadable: {reason}; rerunning its study trains it again")


_TAG = re.compile(r"[\w.+=@/-]+")


def check_tag(tag: Any) -> None:
    """A tag is one word: ``tag:NAME`` baselines, CSV exports (``;``-joined) and shells read it whole."""
    if not (isinstance(tag, str) and _TAG.fullmatch(tag)):
        raise ValueError(f"tag {tag!r} is invalid; expected letters, digits and . _ - + = @ / (no spaces, commas, "
                         f"colons or semicolons), e.g. baseline or torch-2.13")


def default_store_path(rootdir: str | os.PathLike[str] | None = None) -> Path:
    """``$STABENCH_STORE`` if set, else ``<rootdir or cwd>/.stabench/results.sqlite``."""
    env = os.environ.get("STABENCH_STORE")
    if env:
        return Path(env)
    return Path(rootdir if rootdir is not None else os.getcwd()) / ".stabench" / "results.sqlite"


def check_folder_possible(folder: Path) -> None:
    """StoreError where ``folder``, or a folder above it, is a file: the store could never be made
    there (said before a session trains, not after its first run)."""
    if file := _file_in_the_way(folder):
        raise StoreError(f"cannot make the results store's folder {folder}: {file} is a file, not a folder")


def _file_in_the_way(folder: Path) -> Path | None:
    return next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), None)


def _make_folder(folder: Path) -> None:
    """The store's folder; the default one (``.stabench``, made here) gets a ``.gitignore``, as
    ``.pytest_cache`` does, so ``git add -A`` does not commit a live database: a baseline to
    commit is a ``stabench export`` file."""
    try:
        if folder.name == ".stabench" and not folder.exists():
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".gitignore").write_text("# made by stabench: the results store is not for git; commit "
                                               "`stabench export` files instead\n*\n")
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        check_folder_possible(folder)
        raise StoreError(f"cannot make the results store's folder {folder}: {exc.strerror or exc}") from None


def beside_store(store_path: str | os.PathLike[str], kind: str) -> Path:
    """The folder of a store's per-run ``kind`` files ("locks", "attempts", "unstored"), named after
    the store file as SQLite names its ``-wal``, so two stores in one folder keep theirs apart.  It
    is removed whenever it empties (see :func:`remove_if_empty`): a script's store leaves no folder
    beside it."""
    path = Path(store_path)
    return path.with_name(f"{path.name}-{kind}")


_FOLDER_RETRIES = 100
T = TypeVar("T")


def in_made_folder(folder: Path, create: Callable[[], T]) -> T:
    """``create()`` (which makes a file in ``folder``) once the folder is made.  The last holder of
    a lock or note may remove the emptied folder between the two (see :func:`remove_if_empty`):
    then again, a few times; a folder that keeps vanishing gives ``create``'s own error."""
    for _ in range(_FOLDER_RETRIES - 1):
        _make_vanishing_folder(folder)
        with contextlib.suppress(FileNotFoundError):
            return create()
    _make_vanishing_folder(folder)
    return create()


def _make_vanishing_folder(folder: Path) -> None:
    """``mkdir -p``.  pathlib's ``exist_ok`` raises FileExistsError when the folder existed as it
    tried and was gone when it looked again (the last holder removed it in between): that is no
    error here, ``create`` then finds it missing and the folder is made again."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        if folder.exists() and not folder.is_dir():  # a file where the folder belongs
            raise


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` unless it holds a file.  A process about to create its file there may
    find the folder gone: :func:`in_made_folder` makes it again."""
    with contextlib.suppress(OSError):  # not empty: another run's file is there
        folder.rmdir()


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(f"""
        CREATE TABLE runs (
            key TEXT PRIMARY KEY,
            task_name TEXT, model_name TEXT, recipe_name TEXT, recipe_hash TEXT,
            seed INTEGER,
            {", ".join(f"{name} TEXT" for name in KEY_FIELDS)},
            failed INTEGER NOT NULL, collapsed INTEGER NOT NULL, diverged INTEGER NOT NULL,
            score REAL,
            finished_at TEXT,
            result_json TEXT NOT NULL
        )""")
    conn.execute("CREATE INDEX runs_identity ON runs (task_name, model_name, recipe_name, seed)")
    conn.execute("CREATE INDEX runs_recipe_hash ON runs (recipe_hash)")
    conn.execute(f"CREATE INDEX runs_environment ON runs ({', '.join(KEY_FIELDS)})")
    conn.execute("CREATE INDEX runs_outcome ON runs (failed, collapsed, diverged)")
    conn.execute("CREATE INDEX runs_finished_at ON runs (finished_at)")
    conn.execute("""
        CREATE TABLE tags (
            key TEXT NOT NULL REFERENCES runs (key),
            tag TEXT NOT NULL,
            PRIMARY KEY (key, tag)
        )""")
    conn.execute("CREATE INDEX tags_tag ON tags (tag)")


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Tags per claim: which runs a tag gave each claim, so a later gate finds a claim's
    baseline whatever its recipe is called by then."""
    conn.execute("""
        CREATE TABLE claim_tags (
            tag TEXT NOT NULL,
            claim TEXT NOT NULL,
            key TEXT NOT NULL REFERENCES runs (key),
            PRIMARY KEY (tag, claim, key)
        )""")


def _migrate_to_3(conn: sqlite3.Connection) -> None:
    """Recipe aliases: the other names a run's recipe content was asked for after it was stored
    (a stored run is reused by any recipe with its content), so a filter finds it by each."""
    conn.execute("""
        CREATE TABLE recipe_aliases (
            key TEXT NOT NULL REFERENCES runs (key),
            name TEXT NOT NULL,
            PRIMARY KEY (key, name)
        )""")
    conn.execute("CREATE INDEX recipe_aliases_name ON recipe_aliases (name)")


def _record_field(path: str) -> str:
    """SQL for a field of the stored record, NULL where the record is damaged: ``json_extract`` on
    one damaged record stops the whole query (a filter, a list of stored values, an upgrade)."""
    return f"CASE WHEN json_valid(result_json) THEN json_extract(result_json, '{path}') END"


def _record_field_is(path: str, as_text: bool = False) -> str:
    """SQL that a field of the stored record (``as_text``: as text) is the parameter; never true of
    a damaged record, whose field is not NULL but unknown."""
    field = f"CAST({_record_field(path)} AS TEXT)" if as_text else _record_field(path)
    return f"(json_valid(result_json) AND {field} IS ?)"


_UNDAMAGED = "WHERE json_valid(result_json)"  # a damaged record's field is no stored value to list


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    """Runs of a local model folder stored before 2026-12-04 (keyed by its weights alone) were named
    by the path as typed; they read back under the folder's name, and so are they filtered."""
    rows = conn.execute(f"SELECT key, model_name FROM runs "
                        f"WHERE {_record_field('$.model.weights_sha256')} IS NOT NULL").fetchall()
    conn.executemany("UPDATE runs SET model_name = ? WHERE key = ?",
                     [(folder_name(name), key) for key, name in rows if folder_name(name) != name])


# _MIGRATIONS[i] upgrades a store from schema version i to i + 1; append, never edit.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_1, _migrate_to_2, _migrate_to_3,
                                                           _migrate_to_4]


def schema_version() -> int:
    """The schema version this code writes."""
    return len(_MIGRATIONS)


# The filters whose stored values an error can list, and how to read them.
_DISTINCT_VALUES = {
    "task": "SELECT DISTINCT task_name FROM runs", "model": "SELECT DISTINCT model_name FROM runs",
    "recipe": "SELECT recipe_name FROM runs UNION SELECT name FROM recipe_aliases",
    "tag": "SELECT DISTINCT tag FROM tags",
    "train_size": f"SELECT DISTINCT {_record_field('$.task.train_size')} FROM runs {_UNDAMAGED}",
    "recipe_hash": "SELECT DISTINCT recipe_hash FROM runs",
    **{name: f"SELECT DISTINCT {name} FROM runs" for name in KEY_FIELDS},
    **{name: f"SELECT DISTINCT CAST({_record_field(f'$.environment.{name}')} AS TEXT) FROM runs {_UNDAMAGED}"
       for name in ALL_KEY_FIELDS if name not in KEY_FIELDS},
}


def _given(filters: dict[str, Any], env: dict[str, Any] | None) -> dict[str, Any]:
    """The filters that were given (None: not given) and environment fields (None: a field the
    run lacks, written "none" as the stored values list it)."""
    given = {name: value for name, value in filters.items() if value is not None}
    if not isinstance(given.get("task", ""), str):  # a Task selects its current data
        given["task"] = f"{_named('task', given['task'], 'name')} (its data as it is now)"
    if not isinstance(given.get("recipe", ""), str):  # a Recipe selects its content
        recipe = given["recipe"]
        given["recipe"] = f"{_named('recipe', recipe, 'name')} ({_named('recipe', recipe, 'hash')[:SHORT_HASH]})"
    given.update({name: "none" if value is None else value for name, value in (env or {}).items()})
    return given


def _compared(filters: dict[str, Any], env: dict[str, Any] | None) -> dict[str, Any]:
    """The given filters as stored values are compared with them: a Task by its name, a Recipe by
    its hash (``_given`` words them for people)."""
    given = {name: value for name, value in filters.items() if value is not None}
    if not isinstance(given.get("task", ""), str):
        given["task"] = _named("task", given["task"], "name")
    if not isinstance(given.get("recipe", ""), str):
        given["recipe_hash"] = _named("recipe", given.pop("recipe"), "hash")
    given.update({name: "none" if value is None else value for name, value in (env or {}).items()})
    return given


_NAMED_BY_PLURAL = ("task", "model", "recipe", "tag", "train_size")  # "stored tasks: ...", not "task values"


def _matches(filter_name: str, given: Any, stored: str) -> bool:
    """Whether a stored value (as ``stored_values`` lists it) satisfies a filter's value, a
    recipe hash by its start."""
    if filter_name == "recipe_hash":
        return stored.startswith(str(given)) or str(given).startswith(stored)
    return str(given) == stored


# Runs stored under a recipe name, or asked for under it since (aliases).
_NAMED = "(recipe_name = ? OR key IN (SELECT key FROM recipe_aliases WHERE name = ?))"


def _study_of(run: RunResult) -> tuple:
    """What a recipe name's study is made of, as ``Store._studies_named`` selects it."""
    return run.recipe_hash, run.task["name"], run.model["name"], run.task.get("train_size")


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # what SQLite writes beside a database


def is_sqlite_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` is an SQLite database, by its header (False if it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def sqlite_database_of(path: Path) -> Path | None:
    """The SQLite database (a results store?) whose side file ``path`` is, or None.  SQLite owns
    that file even while it is empty or missing: another writer there loses committed runs."""
    if not path.name.endswith(SQLITE_SIDE_FILES):
        return None
    database = path.with_name(path.name.rsplit("-", 1)[0])
    return database if is_sqlite_file(database) else None


def _disk_error(exc: sqlite3.Error) -> bool:
    """SQLITE_IOERR or SQLITE_FULL (primary result codes, from Python 3.11's ``sqlite_errorcode``):
    the disk failed, not the file's content."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in (10, 13)

# A stored record as bytes: sqlite3 would decode it to text while fetching, and a damaged byte
# (not UTF-8) would stop the whole query with no run named; json.loads decodes it per run.
_RECORD = "CAST(result_json AS BLOB)"
# The record without its trace, which is most of its bytes (per-step losses, per-layer gradient
# norms), for listings of thousands of runs.  A record that is not JSON comes whole, to be named
# damaged, and so does one stored before 2026-11-27, whose train loss is recomputed from its losses.
_RECORD_WITHOUT_TRACE = (f"CAST(CASE WHEN json_valid(result_json) AND {_record_field('$.trace.train_loss_steps')} "
                         f"IS NOT NULL THEN json_remove(result_json, '$.trace') ELSE result_json END AS BLOB)")
# What parsing a damaged record raises (AttributeError: a trace or recipe that is not an object)
_RECORD_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


def check_train_size_filter(value: int | str) -> int | str:
    """A train-size filter: a positive number of examples (also as text) or "full"."""
    text = str(value).strip()
    if text == "full":
        return "full"
    if text.isdecimal() and int(text) > 0:
        return int(text)
    raise StoreError(f"train_size={value!r} is invalid as a filter; expected a whole number of examples >= 1 or 'full'")


class Store:
    """A stabench results database at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike[str], must_exist: bool = False):
        """``must_exist``: for commands that only read, so a misspelt path is an error instead of a
        new empty store."""
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._found_intact = False  # check_writable reads every page once, before the first run trains
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a folder; expected a file in it, e.g. "
                             f"{self.path / 'results.sqlite'}")
        if must_exist and not self.path.is_file():
            raise StoreError(f"no results store at {self.path}; expected the path of an existing store (one "
                             f"written by stabench run or pytest; see --store, stabench_store in pytest's configuration file, or $STABENCH_STORE)")
        self._check_is_ours_or_new()
        _make_folder(self.path.parent)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the results store: {exc}") from exc
        self._conn = conn
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a committed run survives power loss too, not only a crashed process.
            conn.execute("PRAGMA synchronous = FULL")
            self._enable_wal(conn)
            self._migrate()
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot open the results store: {exc}") from exc
            raise

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- opening -----------------------------------------------------------------------

    def _check_is_ours_or_new(self) -> None:
        """Refuse a file that is not a stabench store before writing anything to it.

        Read-only, so a foreign file is not even switched to WAL mode. One read transaction, so
        a store another process is creating is seen before or after its commit, never halfway.
        """
        if not self.path.exists() or (self.path.is_file() and self.path.stat().st_size == 0):
            return
        uri = "file:" + urllib.parse.quote(str(self.path.absolute())) + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open as a stabench results store "
                             f"(an SQLite database): {exc}") from exc
        try:
            conn.execute("BEGIN")
            self._check_schema(conn)
        except sqlite3.Error as exc:
            if "unable to open" in str(exc) and not os.access(self.path.absolute().parent, os.W_OK):
                # WAL readers make -shm beside the store
                raise StoreError(f"{self.path}: cannot open the results store: its folder is not writable, and "
                                 f"SQLite needs to create {self.path.name}-wal and {self.path.name}-shm there; "
                                 f"copy the store to a writable folder") from exc
            if _disk_error(exc):
                raise StoreError(f"{self.path}: cannot read the results store: {exc} (a full or failing disk?); "
                                 f"it is left as it is") from exc
            if "malformed" in str(exc):  # an SQLite database, cut short or overwritten in part
                raise StoreError(f"{self.path}: a damaged SQLite file ({exc}), a stabench results store cut short "
                                 f"or another database; it is left as it is: restore a copy of the store, or import "
                                 f"an export of its runs into a new one") from exc
            raise StoreError(f"{self.path}: not a stabench results store: expected an SQLite "
                             f"database, but reading it failed: {exc}") from exc
        finally:
            conn.close()

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, which lets readers and one writer proceed together.

        Switching a new file needs it to itself and SQLite does not wait for that (no busy
        handler), so processes creating the store at the same moment retry here.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "readonly" in str(exc):  # a read-only copy in another mode (a VACUUM INTO backup): it still reads
                    return
                if "locked" not in str(exc):
                    raise
                mode = str(exc)
            if mode == "wal":
                return
            if time.monotonic() > deadline:
                raise StoreError(f"{self.path}: cannot switch the results store to WAL mode: {mode}")
            time.sleep(0.01)

    def _check_schema(self, conn: sqlite3.Connection) -> int:
        """The store's schema version; StoreError if the file is foreign or too new."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id != APPLICATION_ID:
            tables = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")]
            if tables or version:
                raise StoreError(
                    f"{self.path}: not a stabench results store: expected an SQLite database with "
                    f"application_id {APPLICATION_ID:#x}, found application_id {app_id:#x} "
                    f"and tables {tables}")
        if version < 0:
            raise StoreError(f"{self.path}: not a stabench results store: schema version {version}; expected 0 to "
                             f"{schema_version()}")
        if version > schema_version():
            raise StoreError(
                f"{self.path}: results store has schema version {version}, newer than the "
                f"{schema_version()} this stabench understands; upgrade stabench")
        return version

    def _migrate(self) -> None:
        """Bring the schema up to date, in order, in one write transaction.  A store that is up
        to date is only read, so opening it never waits behind a writer (``stabench runs``
        during a study)."""
        conn = self._connection()
        conn.execute("BEGIN")  # one snapshot: a store being created is seen before or after, never halfway
        try:
            current = self._check_schema(conn) == schema_version()
        finally:
            conn.execute("COMMIT")
        if current:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._check_schema(conn)  # another process may have upgraded it meanwhile
            for number in range(version, schema_version()):
                _MIGRATIONS[number](conn)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {schema_version()}")
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def check_writable(self) -> None:
        """Fail before training rather than after: a run that cannot be stored may have cost hours
        (it would be kept in the ``-unstored`` folder).  Writes the schema version it holds, rolled back, and
        once per opened store checks that its pages are intact (a damaged page fails only the
        write that reaches it)."""
        conn = self._connection()
        if not self._found_intact:
            try:
                problem = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                if "locked" in str(exc):  # busy with other writers: checked at the next run
                    return
                if _disk_error(exc):
                    raise StoreError(f"{self.path}: cannot read the results store: {exc} (a full or failing "
                                     f"disk?), so no run is trained now") from exc
                problem = str(exc)
            if problem != "ok":
                problem = " ".join(problem.replace("*** in database main ***", "").split())  # one line
                raise StoreError(f"{self.path}: the results store is damaged ({problem}), so no run trained now "
                                 f"could be stored; `stabench export` copies out the runs it still reads, and "
                                 f"another store takes new ones")
            self._found_intact = True
        try:
            conn.execute("BEGIN")
            conn.execute(f"PRAGMA user_version = {schema_version()}")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):  # busy with other writers past the timeout, not read-only: the run may go on
                return
            raise StoreError(f"{self.path}: the results store cannot be written ({exc}), so no run trained now "
                             f"could be stored; make it writable or use another store") from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    # -- plumbing ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: results store is closed")
        return self._conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads as one state of the store (a read transaction: in WAL mode writers go on);
        inside another transaction, that one's."""
        conn = self._connection()
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN")
        try:
            yield
        finally:
            if began and conn.in_transaction:
                conn.execute("COMMIT")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it commits, or none of it (IMMEDIATE takes the
        write lock up front, so concurrent writers queue instead of deadlocking)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: write to the results store failed: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def put(self, result: RunResult, replace: bool = False) -> bool:
        """Store a run; True if written.  An existing key is kept unless ``replace`` or its record
        is damaged (then kept in ``damaged/``); either way it gains the run's tags and recipe names.

        A run that cannot be written (say the store stayed locked past the busy timeout, or
        Ctrl-C or SIGTERM came mid-write) may have cost hours of GPU time, so it is kept in an
        importable file beside the store.  A run that would not read back (a script's run whose
        headline metric is no number, say) is refused, unstored: it would make every read of its
        key an error.
        """
        row = row_of(result)
        if (own_key := key_of_record(result)) not in (None, result.key):  # made by hand, or edited
            made = f"key {own_key}" if own_key else "no key (a keyed field is missing)"
            raise StoreError(f"{self.path}: run {result.key} cannot be stored under that key: its seed, task, model, "
                             f"recipe hash and stack make {made}; store a run under the key its contents make, "
                             f"as training gives it")
        try:
            RunResult.from_json(row[-1])
        except _RECORD_ERRORS as error:
            raise StoreError(f"{self.path}: run {result.key} cannot be stored: it would not read back; {error}") \
                from error
        committed = False
        try:
            with self._transaction() as conn:
                written = self._insert(conn, result, row, replace)[0]
            committed = True
            return written
        except StoreError as error:
            raise StoreError(f"{error}; {self._keep_unstored(result)}") from error
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM mid-write: the transaction rolled back
            if not committed:  # a recompute's run too, whose key holds the old copy
                self._keep_unstored(result)
            raise

    def _keep_unstored(self, result: RunResult) -> str:
        """Write ``result`` as a one-run export file in the store's ``-unstored`` folder; say where,
        or why that failed too.  Never over another kept copy (``KEY.2.json`` ...), a retrained one."""
        from .exchange import write_export

        folder = beside_store(self.path, "unstored")
        path = folder / f"{result.key}.json"

        def keep() -> Path:
            kept = _kept_path(folder, result.key)
            write_export(kept, [result], "json")
            return kept

        try:
            path = in_made_folder(folder, keep)  # a rerun adopting the folder's last file removes the folder
        except OSError as exc:
            return f"keeping the run in {path} failed too: {exc}"
        with contextlib.suppress(StoreError, sqlite3.Error):
            stored = self._connection().execute(f"SELECT {_RECORD} FROM runs WHERE key = ?", (result.key,)).fetchone()
            if stored is not None and _stored_copy(stored[0], result.key)[1] != "damaged":  # which an import keeps
                return f"the run is kept in {path}; the store holds another copy of it, which an import would keep"
        return (f"the run is kept in {path}; `stabench import --store {shlex.quote(str(self.path))} "
                f"{shlex.quote(str(path))}` stores it")

    def _insert(self, conn: sqlite3.Connection, result: RunResult, row: tuple[Any, ...],
                replace: bool) -> tuple[bool, RunResult | None]:
        """(written?, the stored copy kept instead, when this version reads it)."""
        columns = (*COLUMNS, "result_json")
        before = conn.execute(f"SELECT recipe_name, {_RECORD} FROM runs WHERE key = ?", (result.key,)).fetchone()
        kept, state = (None, "missing") if before is None else _stored_copy(before[1], result.key)
        if state == "read" and kept.seed != result.seed and key_of_record(result) == result.key:
            state = "damaged"  # an edited record of no key fields: this run's own key shows it
        if state == "newer" and replace:  # never replaced, not by a recompute either: it holds what this drops
            raise StoreError(f"{self.path}: stored run {result.key} was written by a newer stabench, so this one "
                             f"does not replace it; upgrade stabench")
        if state == "damaged":  # a run lost: this copy takes its place, and the damaged bytes are kept aside
            self._keep_damaged(result.key, before[1])
            replace = True
        sql = (f"INSERT INTO runs ({', '.join(columns)}) "
               f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT (key) DO ")
        if replace:
            # An upsert, not INSERT OR REPLACE: the row is updated in place, so the run's
            # tags (which reference it) stay.
            sql += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
        else:
            sql += "NOTHING"
        written = conn.execute(sql, row).rowcount > 0
        # A run already stored still learns the names an imported copy was asked for elsewhere;
        # one stored again (recompute) under a new name keeps its old name as an alias.
        renamed = [before[0]] if written and before is not None else []
        stored_name = result.recipe_name if written else before[0]
        self._add_aliases(conn, result.key, stored_name, [*result.recipe_names, *renamed])
        # An imported copy's tags join a stored run's: a baseline exported elsewhere stays tagged.
        conn.executemany("INSERT OR IGNORE INTO tags (key, tag) VALUES (?, ?)",
                         [(result.key, tag) for tag in result.tags])
        return written, None if written else kept

    def _keep_damaged(self, key: str, record: bytes) -> None:
        """Copy a damaged record to ``damaged/KEY.json`` (``KEY.2.json`` ... when damaged again)."""
        folder = self.path.parent / "damaged"
        path = folder / f"{key}.json"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = _kept_path(folder, key, holds=lambda kept: kept.read_bytes() == record)
            path.write_bytes(record)
        except OSError as exc:
            raise StoreError(f"{self.path}: stored run {key} is damaged, and keeping its record in {path} before "
                             f"replacing it failed ({exc.strerror or exc}); nothing was replaced") from exc

    @staticmethod
    def _add_aliases(conn: sqlite3.Connection, key: str, stored_name: str, names: Iterable[str]) -> None:
        """Record ``names`` as aliases of run ``key``, stored under ``stored_name`` (never its own alias)."""
        conn.executemany("INSERT OR IGNORE INTO recipe_aliases (key, name) VALUES (?, ?)",
                         [(key, name) for name in names if name != stored_name])
        conn.execute("DELETE FROM recipe_aliases WHERE key = ? AND name = ?", (key, stored_name))

    def add_recipe_alias(self, result: RunResult, name: str) -> RunResult:
        """Record that a recipe called ``name`` (same content) asked for the stored ``result``;
        returns the run as it reads now.  Writes only when the name is new to the run."""
        if name in result.recipe_names:
            return result
        try:
            with self._transaction() as conn:
                stored = conn.execute("SELECT recipe_name FROM runs WHERE key = ?", (result.key,)).fetchone()
                if stored is not None:
                    self._add_aliases(conn, result.key, stored[0], [name])
        except StoreError:  # a store busy past its timeout must not fail a run that is stored: it is only a name
            return result
        return dataclasses.replace(result, recipe_aliases=sorted({*result.recipe_aliases, name}))

    def tag(self, keys: Iterable[str], tag: str, claim: str | None = None) -> int:
        """Add ``tag`` to the given runs (all must exist); returns how many runs were newly tagged.

        With ``claim``, these runs become that claim's runs under the tag, replacing any tagged
        for it before, which also lose the tag unless another claim holds them under it: tagging
        again moves a claim's baseline, for the pytest gate and for ``tag:NAME`` alike."""
        check_tag(tag)
        keys = list(keys)
        with self._transaction() as conn:
            missing = [key for key in keys if key not in self]
            if missing:
                raise StoreError(f"{self.path}: cannot tag {tag!r}: no stored runs with keys "
                                 f"{missing}")
            if claim is not None:
                previous = [row[0] for row in conn.execute(
                    "SELECT key FROM claim_tags WHERE tag = ? AND claim = ?", (tag, claim))]
                conn.execute("DELETE FROM claim_tags WHERE tag = ? AND claim = ?", (tag, claim))
                for key in set(previous) - set(keys):
                    if conn.execute("SELECT 1 FROM claim_tags WHERE tag = ? AND key = ?", (tag, key)).fetchone() is None:
                        conn.execute("DELETE FROM tags WHERE tag = ? AND key = ?", (tag, key))
                conn.executemany("INSERT OR IGNORE INTO claim_tags (tag, claim, key) VALUES (?, ?, ?)",
                                 [(tag, claim, key) for key in keys])
            return sum(conn.execute("INSERT OR IGNORE INTO tags (key, tag) VALUES (?, ?)",
                                    (key, tag)).rowcount for key in keys)

    def unclaimed(self, tag: str) -> set[str]:
        """The runs holding ``tag`` that no claim holds under it: imported with the tag, or tagged by
        ``stabench tag``."""
        return {row[0] for row in self._connection().execute(
            "SELECT key FROM tags WHERE tag = ? AND key NOT IN (SELECT key FROM claim_tags WHERE tag = ?)",
            (tag, tag))}

    def untag(self, keys: Iterable[str], tag: str) -> tuple[int, list[str]]:
        """Take ``tag`` off the given runs, for every claim that held them under it: (how many runs
        lost it, the claims that lost runs).  The runs themselves stay.  Only a pytest session's
        ``--stabench-tag`` gives a claim its runs back; ``tag()`` without a claim does not."""
        keys = list(keys)
        with self._transaction() as conn:
            claims = sorted({row[0] for key in keys for row in conn.execute(
                "SELECT claim FROM claim_tags WHERE tag = ? AND key = ?", (tag, key))})
            conn.executemany("DELETE FROM claim_tags WHERE tag = ? AND key = ?", [(tag, key) for key in keys])
            removed = sum(conn.execute("DELETE FROM tags WHERE tag = ? AND key = ?", (tag, key)).rowcount
                          for key in keys)
        return removed, claims

    # -- reading -----------------------------------------------------------------------

    def get(self, key: str, seed: int | None = None) -> RunResult | None:
        """The stored run ``key``; None if missing, :class:`UnreadableRun` if damaged.  ``seed``: the
        seed whose key this is; a record saying another seed was edited (one stored before its key
        fields were recorded cannot show it otherwise), and is damaged too."""
        row = self._connection().execute(
            f"SELECT key, {_RECORD} FROM runs WHERE key = ?", (key,)).fetchone()
        stored = None if row is None else self._load(*row)
        if stored is not None and seed is not None and stored.seed != seed:
            raise UnreadableRun(self.path, key, ValueError(f"it records seed {stored.seed} under the key of seed "
                                                           f"{seed}: the record was edited after it was stored"))
        return stored

    def reusable(self, key: str, claimed: bool = False, seed: int | None = None) -> RunResult | None:
        """The stored run ``key`` (of ``seed``, as ``get``) for a rerun to reuse; None if missing or
        damaged, for a rerun finishes what is missing and a damaged record is a run lost (``put``
        replaces it, keeping the damaged bytes aside).  ``claimed``: the second look, under the
        run's claim (see ``lock``), whose caller warned already; a run that ``put`` kept in the
        ``-unstored`` folder is stored from there then, rather than trained again."""
        try:
            return self.get(key, seed) or (self._adopt_unstored(key, seed) if claimed else None)
        except UnreadableRun as error:
            if not claimed:
                warn(f"{self.path}: stored run {key} is unreadable ({error.reason}); training it again "
                     f"(the new run replaces it, after its record is copied to "
                     f"{self.path.parent / 'damaged'}/)")
            return None

    def _adopt_unstored(self, key: str, seed: int | None) -> RunResult | None:
        """Run ``key`` as ``put`` kept it in the ``-unstored`` folder (the store locked past its busy
        timeout, or Ctrl-C mid-write), now stored and its file removed: a rerun then reads it
        instead of training it again.  A file that does not import (cut short, another run) is left
        alone; so is every file while the store stays locked past the busy timeout."""
        from .exchange import read_export

        folder = beside_store(self.path, "unstored")
        kept = [path for path in sorted(folder.glob(f"{key}*.json"))
                if re.fullmatch(rf"{re.escape(key)}(\.\d+)?\.json", path.name)]  # KEY.json, KEY.2.json ...
        for path in kept:
            try:
                runs = read_export(path)
                if [run.key for run in runs] != [key] or (seed is not None and runs[0].seed != seed):
                    continue
                self.merge(runs)
            except (StoreError, sqlite3.Error):  # another run's file, damaged, or a store that takes no write
                continue
            with contextlib.suppress(OSError):
                path.unlink()
            remove_if_empty(folder)
            return self.get(key, seed)
        return None

    def other_stacks(self, key: str, task: dict[str, Any], model: dict[str, Any], recipe_hash: str, seed: int,
                     stack: dict[str, Any]) -> list[dict[str, tuple[Any, Any]]]:
        """For each stored run that is run ``key`` (``task``, ``model``, recipe and seed as the key
        makes them) under another library stack or device: its key fields that differ from
        ``stack``, as {field: (stored, this)}.  A run about to train again only because the stack
        moved on can say so."""
        found = []
        for (record,) in self._read(f"SELECT {_RECORD} FROM runs WHERE task_name = ? AND model_name = ? AND "
                                    f"recipe_hash = ? AND seed = ? AND key != ?",
                                    (task.get("name"), model.get("name"), recipe_hash, seed, key)):
            try:
                run = RunResult.from_json(record)
            except _RECORD_ERRORS:
                continue
            if run_key({name: run.task.get(name) for name in task}, {name: run.model.get(name) for name in model},
                       run.recipe_hash, run.seed, stack) == key:
                theirs = key_fields(run.environment)
                found.append({name: (theirs.get(name), value) for name, value in stack.items()
                              if theirs.get(name) != value})
        return [differ for differ in found if differ]

    def find_key(self, start: str) -> str:
        """The stored key that is ``start`` or begins with it, as git takes a commit's short hash."""
        keys = [row[0] for row in self._connection().execute(
            "SELECT key FROM runs WHERE substr(key, 1, ?) = ? ORDER BY key LIMIT 6", (len(start), start))]
        if start in keys:
            return start
        if len(keys) == 1 and len(start) >= 4:
            return keys[0]
        if not keys:
            raise StoreError(f"no stored run with key {start!r}; `stabench runs` lists the keys")
        if len(start) < 4:
            raise StoreError(f"key {start!r} is too short; give at least 4 characters of a key `stabench runs` lists")
        more = ", ..." if len(keys) > 5 else ""
        raise StoreError(f"key {start!r} starts several stored keys ({', '.join(keys[:5])}{more}); give more "
                         f"characters")

    def __contains__(self, key: object) -> bool:
        return self._connection().execute(
            "SELECT 1 FROM runs WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> list[str]:
        return [row[0] for row in self._connection().execute("SELECT key FROM runs ORDER BY key")]

    def count(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def nothing_matches(self, filters: dict[str, Any], env: dict[str, Any] | None = None) -> str:
        """Says that no run matches ``filters`` (None: not given) and ``env`` (None: a field the
        run lacks), with the stored values of each filter that matched nothing on its own (the
        usual cause is a typo)."""
        given = _given(filters, env)
        hints = self.unmatched_hints(filters, env)
        return (f"no stored run matches {', '.join(f'{k}={v}' for k, v in given.items())}"
                + (f" ({'; '.join(hints)})" if hints else ""))

    def unmatched_hints(self, filters: dict[str, Any], env: dict[str, Any] | None = None) -> list[str]:
        """For each filter (as in ``nothing_matches``) that matches no stored run on its own, its
        stored values, e.g. ``stored tasks: polarity, rte`` or ``stored torch values: 2.13.0``."""
        given = _compared(filters, env)
        hints = []
        for name, value in given.items():
            if name not in _DISTINCT_VALUES:
                continue
            values = self.stored_values(name)
            if name == "recipe" and (why := overrides_error(str(value))):
                hints.append(why)
            if not any(_matches(name, value, stored) for stored in values):
                plural = ("recipe hashes" if name == "recipe_hash" else f"{name}s" if name in _NAMED_BY_PLURAL
                          else f"{name} values")
                hints.append(f"stored {plural}: {', '.join(values) or 'none'}")
        return hints

    def recipe_name(self, name: str) -> str:
        """``name`` as a filter of recipes: as given where runs are stored or asked for under it, else
        a preset's overrides read in any order and spelling (``bert-default[max_steps=64,lr=3e-3]``
        finds the runs stored as ``bert-default[lr=0.003,max_steps=64]``)."""
        canonical = canonical_name(name)
        return name if canonical == name or name in self.stored_values("recipe") else canonical

    def stored_values(self, filter_name: str) -> list[str]:
        """The distinct stored tasks, models, recipes, tags, train sizes, recipe hashes (as short as
        ``stabench runs`` shows them) or environment fields, so an error can list them."""
        rows = self._read(_DISTINCT_VALUES[filter_name], ())
        if filter_name == "recipe_hash":
            return sorted({row[0][:SHORT_HASH] for row in rows})
        missing = "full" if filter_name == "train_size" else "none"
        return sorted(missing if row[0] is None else str(row[0]) for row in rows)

    def recipe_named(self, name: str, task: str | None = None, model: str | None = None,
                     recipe_hash: str | None = None) -> Recipe | None:
        """The recipe whose runs the store holds under ``name`` (their first name or an alias, as a
        claim file's ``get_recipe(..., name="mine@2e-4")`` gave it), named ``name``: the runs of
        ``task`` and ``model`` (its stored name) count first; ``recipe_hash`` (a start of it) picks
        one version of a recipe edited under one name.  None when no run has the name; an error
        when its runs hold several recipes, or none of that hash."""
        named = [run for run in self.query(recipe=name, traces=False) if name in run.recipe_names]
        here = [run for run in named if (run.task["name"], run.model["name"]) == (task, model)]
        stored = {run.recipe_hash: run.recipe for run in here or named}
        # 37367b22 (epochs=15): which version is which
        hashes = ", ".join(version_labels([(h[:SHORT_HASH], stored[h]) for h in sorted(stored)]))
        if recipe_hash is not None and stored:
            stored = {h: recipe for h, recipe in stored.items() if h.startswith(recipe_hash)}
            if len(stored) != 1:
                which = "no hash" if not stored else f"{len(stored)} hashes"
                raise ValueError(f"recipe hash {recipe_hash!r} starts {which} of the recipes stored as {name!r} "
                                 f"({hashes}); expected a start of one of them alone")
        if len(stored) > 1:
            raise ValueError(f"recipe name {name!r} is ambiguous: the store holds {len(stored)} recipes under it"
                             f"{f' on {task} / {model}' if here else ''} (recipe hashes {hashes}, as `stabench runs "
                             f"--recipe {name}` lists them); give the one meant as a Recipe (stabench run: "
                             f"--recipe-hash with the start of its hash), or a recipe file (.json) of its fields")
        # named as asked, not checked as a new recipe would be: its runs already hold that name
        return dataclasses.replace(Recipe.from_dict(next(iter(stored.values()))), name=name) if stored else None

    def query(self, task: Any = None, model: str | None = None, recipe: Any = None,
              seed: int | Iterable[int] | None = None, tag: str | None = None,
              env: dict[str, Any] | None = None, claim: str | None = None,
              recipe_hash: str | None = None, train_size: int | str | None = None,
              traces: bool = True, skip_damaged: bool = False) -> list[RunResult]:
        """Runs matching every given filter; ``env`` filters on the run-key environment
        fields (``None`` as a value matches a missing field); ``claim`` (with ``tag``) keeps
        the runs that tag gave that claim; ``recipe_hash`` may be a prefix, as ``stabench runs``
        shows it, to pick one version of a recipe edited under one name; ``train_size`` is a
        subsample size (the 1k study's 1000; the size of the whole training set selects its
        full-data runs too, as a study does) or ``"full"`` for runs on the whole training set.
        ``task`` and ``recipe`` may be the objects ``stabench.run`` takes (a Task selects its data as
        it is now, by fingerprint, so its data must load, whereas its name selects every version; a
        Recipe selects its content, whatever its name; a name also selects the runs of its content
        under other names on the same task, model and data size); ``seed`` may be a list.
        ``traces=False`` reads the runs without their ``trace`` (left empty, but for a record stored
        before 2026-11-27 or one that is not JSON), a fraction of the bytes, for a listing of scores
        and verdicts; damage inside a trace shows only when the run is read whole.  A damaged record
        is an error naming it (:class:`UnreadableRun`), or with ``skip_damaged`` (a listing, a
        backup) left out with a :class:`DamagedRunsLeftOut` warning naming it."""
        where: list[str] = []
        params: list[Any] = []
        if recipe is not None and not isinstance(recipe, str):  # a Recipe: this content, under any name
            if recipe_hash is not None:
                raise StoreError(f"recipe={recipe!r} selects a recipe hash already; leave recipe_hash= out")
            recipe_hash, recipe = _named("recipe", recipe, "hash"), None
        elif recipe is not None:
            recipe = self.recipe_name(recipe)
        data_of = task if task is not None and not isinstance(task, str) else None  # a Task: its data as it is now
        task = _named("task", task, "name") if data_of is not None else task
        for column, value in (("task_name", task), ("model_name", model)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if seed is not None:
            seeds = [seed] if isinstance(seed, Integral) else list(seed) if isinstance(seed, Iterable) else [seed]
            if not seeds or not all(isinstance(s, Integral) and not isinstance(s, bool) for s in seeds):
                raise StoreError(f"seed={seed!r} is invalid; expected a seed or a list of seeds (integers)")
            where.append(f"seed IN ({', '.join('?' * len(seeds))})")
            params.extend(int(s) for s in seeds)
        linked: set[tuple] | None = None
        if recipe is not None:  # the name it is stored under, any other name it was asked for, or the content
            # a run with that name has on the same task, model and data size: as summary groups them, one study
            linked = self._studies_named(recipe)
            hashes = sorted({study[0] for study in linked})
            where.append(f"({_NAMED} OR recipe_hash IN ({', '.join('?' * len(hashes))}))")
            params.extend([recipe, recipe, *hashes])
        if recipe_hash is not None:
            if not isinstance(recipe_hash, str):
                raise StoreError(f"recipe_hash={recipe_hash!r} is invalid; expected the start of a recipe hash, "
                                 f"as text")
            if not recipe_hash.strip():  # the start of every hash
                raise StoreError(f"recipe_hash={recipe_hash!r} is empty; expected the start of a recipe hash")
            where.append("substr(recipe_hash, 1, ?) = ?")
            params.extend([len(recipe_hash), recipe_hash])
        if train_size is not None:
            size, sized = check_train_size_filter(train_size), _record_field_is("$.task.train_size")
            if size == "full":
                where.append(sized)
                params.append(None)
            else:  # the whole training set asked for by its size is the full set, as in a study
                where.append(f"({sized} OR ({sized} AND {_record_field_is('$.task.n_train')}))")
                params.extend([size, None, size])
        if tag is not None:
            where.append("key IN (SELECT key FROM tags WHERE tag = ?)")
            params.append(tag)
        if claim is not None:
            if tag is None:
                raise StoreError(f"{self.path}: a claim filter ({claim!r}) needs a tag")
            where.append("key IN (SELECT key FROM claim_tags WHERE tag = ? AND claim = ?)")
            params.extend([tag, claim])
        for name, value in (env or {}).items():
            if name in KEY_FIELDS:
                where.append(f"{name} IS ?")
                params.append(value)
            elif name in ALL_KEY_FIELDS:  # not a column: read from the stored record
                where.append(_record_field_is(f"$.environment.{name}", as_text=True))
                params.append(None if value is None else str(value))
            else:
                raise StoreError(f"{self.path}: cannot filter on environment field {name!r}; "
                                 f"expected one of {list(ALL_KEY_FIELDS)}")
        sql = f"SELECT key, {_RECORD if traces else _RECORD_WITHOUT_TRACE} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY task_name, model_name, recipe_name, seed, key"
        rows = self._read(sql, params)
        runs, damaged = [], []
        with collection_paused():
            for row in rows:
                try:
                    runs.append(self._load(*row))
                except UnreadableRun as error:
                    if not skip_damaged:
                        raise
                    damaged.append(error.key)
        if damaged:
            warn(DamagedRunsLeftOut(self.path, damaged))
        if linked is not None:  # a run of a named study's content on another task, model or data size is not its
            runs = [r for r in runs if recipe in r.recipe_names or _study_of(r) in linked]
        if data_of is not None and runs:
            from .tasks import Task, on_current_data

            if isinstance(data_of, Task):
                runs = on_current_data(data_of, runs)
        return runs

    def _studies_named(self, recipe: str) -> set[tuple]:
        """(recipe hash, task, model, data size) of every run stored or asked for under ``recipe``."""
        return set(self._read(f"SELECT recipe_hash, task_name, model_name, {_record_field('$.task.train_size')} "
                              f"FROM runs WHERE {_NAMED}", (recipe, recipe)))

    def _read(self, sql: str, params: Sequence[Any]) -> list[tuple]:
        """Rows of a query; SQLite's own error (a damaged file, say) in one line.  A damaged record
        is no error here: filters read records through ``_record_field``."""
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: cannot read the stored runs ({error})") from error

    def _load(self, key: str, result_json: bytes) -> RunResult:
        """The stored record with its tags as they are now: the tags table holds every tag a run
        was stored with (``put``, ``import_file``) and those ``tag()`` and ``untag()`` changed since.
        The record comes as bytes (``_RECORD``), so a damaged one is an error naming its run."""
        try:
            result = RunResult.from_json(result_json)
            _check_is_run(result, key)
        except NewerRecord as exc:  # not damaged: never replaced
            raise StoreError(f"{self.path}: stored run {key} was written by a newer stabench ({exc}); upgrade "
                             f"stabench to read it") from exc
        except _RECORD_ERRORS as exc:
            raise UnreadableRun(self.path, key, exc) from exc
        result.tags = [row[0] for row in self._connection().execute(
            "SELECT tag FROM tags WHERE key = ? ORDER BY tag", (key,))]
        result.recipe_aliases = [row[0] for row in self._connection().execute(
            "SELECT name FROM recipe_aliases WHERE key = ? ORDER BY name", (key,))]
        return result

    # -- exchange ----------------------------------------------------------------------

    def export(self, path: str | os.PathLike[str], fmt: str | None = None, **filters: Any) -> int:
        """Write the runs matching ``filters`` (as in ``query``; all runs by default) to ``path``
        as JSON (a list of full run dicts) or CSV (one flat row per run, plus the full record in
        ``result_json`` for re-import); ``fmt`` defaults to the path's suffix, ``.json`` or ``.csv``
        (JSON for a name without one), and another suffix needs ``fmt``.
        Returns the number of runs; the file is replaced atomically.  A damaged record is left out
        with a warning, so the other runs can still be backed up, but never over an earlier export
        (which may hold it whole).  Runs are read and written a few at a time: a store of
        gigabytes of traces exports in little memory."""
        if fmt not in (None, "json", "csv"):
            raise StoreError(f"cannot export to {path}: unknown format {fmt!r}; expected 'json' or 'csv'")
        path = Path(path)
        try:
            with self._snapshot():
                return self._export(path, fmt, filters)
        except OSError as exc:  # a read-only folder, a full disk, a name too long
            raise StoreError(f"cannot export to {path}: {exc.strerror or exc}") from None

    def _export(self, path: Path, fmt: str | None, filters: dict[str, Any]) -> int:
        """``export`` in one snapshot of the store: runs listed, then read whole a hundred at a
        time, as one state of it, while writers go on (WAL)."""
        from .exchange import replaceable_export, write_export

        if not replaceable_export(path):
            raise StoreError(f"cannot export to {path}: it exists and is not a stabench export, so it is left as "
                             f"it is; name a new file, or move it away first")
        suffix = path.suffix.lower()
        if fmt is None and suffix not in ("", ".json", ".csv"):  # "runs.tsv" would silently be JSON
            raise StoreError(f"cannot tell the export format of {path} from its suffix {path.suffix!r}; "
                             f"expected a .json or .csv file, or fmt='json' or 'csv'")
        fmt = fmt or ("csv" if suffix == ".csv" else "json")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            listed = self.query(**filters, traces=False, skip_damaged=True)  # which runs; a CSV's columns
        damaged: list[str] = []
        for seen in caught:
            if isinstance(seen.message, DamagedRunsLeftOut):
                damaged += seen.message.keys
            else:
                warnings.warn_explicit(seen.message, seen.category, seen.filename, seen.lineno)
        if not listed and any(v is not None for v in filters.values()):
            others = {k: v for k, v in filters.items() if k != "env"}
            raise StoreError(f"{self.nothing_matches(others, filters.get('env'))}; nothing was exported to {path}")
        existing = path.absolute().parent
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise StoreError(f"cannot export to {path}: {str(existing)!r} is a file, not a folder")
        earlier = path.exists()  # an earlier export, which may be the only whole copy of a damaged run

        def kept() -> StoreError:
            return StoreError(f"{DamagedRunsLeftOut(self.path, damaged)}; so {path}, an earlier export that may "
                              f"hold them whole, is left as it is: export to a new file")

        if damaged and earlier:
            raise kept()
        path.parent.mkdir(parents=True, exist_ok=True)  # as reports do: a CI artifact folder, say
        try:
            written = write_export(path, self._whole(listed, damaged, stop=earlier), fmt, listed)
        except UnreadableRun:
            raise kept() from None
        if damaged:
            warn(DamagedRunsLeftOut(self.path, damaged))
        return written

    def _whole(self, listed: Sequence[RunResult], damaged: list[str], stop: bool) -> Iterator[RunResult]:
        """``listed``'s runs read whole, 100 at a time, in the export's snapshot.  A trace that no
        longer parses (a listing does not read it) adds its run to ``damaged`` and, with ``stop``,
        raises UnreadableRun."""
        for start in range(0, len(listed), 100):
            keys = [run.key for run in listed[start:start + 100]]
            records = dict(self._read(f"SELECT key, {_RECORD} FROM runs WHERE key IN ({', '.join('?' * len(keys))})",
                                      keys))
            loaded = []
            with collection_paused():
                for key in keys:
                    try:
                        loaded.append(self._load(key, records[key]))
                    except UnreadableRun:
                        damaged.append(key)
                        if stop:
                            raise
            yield from loaded

    def import_file(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Merge an ``export`` file into the store: (added, skipped as already stored).  A run
        already stored gains the copy's tags and recipe names.

        The whole file is validated first and merged in one transaction, so a bad file
        changes nothing.
        """
        from .exchange import read_export

        return self.merge(read_export(path))

    def merge(self, runs: Sequence[RunResult]) -> tuple[int, int]:
        """Add validated runs (``read_export``'s) in one transaction: (added, skipped as already stored),
        counting each run once however often the file holds it.

        A run already stored keeps its stored copy.  Where the file's copy scored differently (a
        GPU's nondeterminism, another machine under the same key) a warning names both scores."""
        added, differing = 0, []
        with self._transaction() as conn:
            for run in runs:
                written, kept = self._insert(conn, run, row_of(run), replace=False)
                added += written
                if kept is not None and scored_differently(kept, run):
                    differing.append(both_scores(kept, run))
        if differing:
            warn(f"kept the stored copy of {len(differing)} run(s) that the file's copy scored differently "
                 f"(stored first): {'; '.join(differing[:3])}" + ("; ..." if len(differing) > 3 else ""))
        return added, len({run.key for run in runs}) - added  # a run the file holds twice is one run

    # -- claiming runs -----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the claim on run ``key`` until the block ends; yields whether it is held.

        With ``blocking=False`` the block runs at once and gets False when another process
        holds the claim (it is training that run right now).

        An ``flock`` dies with its process, so a SIGKILLed holder never blocks the run
        forever.  The holder deletes the lock file on the way out (and the ``-locks`` folder when
        it empties), so the folder keeps only the files of runs being trained (or of holders that
        were killed).  A process that was waiting on a deleted file finds that its file is no
        longer the one at the path, and locks the new one instead: two holders are never in at once.
        """
        if not _SAFE_KEY.fullmatch(key):
            raise StoreError(f"cannot lock run key {key!r}: expected letters, digits, '.', '_' or '-'")
        path = beside_store(self.path, "locks") / f"{key}.lock"
        while True:
            try:
                fd = in_made_folder(path.parent, lambda: os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
            except OSError as exc:  # "-locks" is a file, a read-only folder
                raise StoreError(f"{self.path}: cannot write the claim on run {key} beside the store, {path} "
                                 f"({exc.strerror or exc})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                held = _same_file(fd, path)  # False: the holder before us deleted this file
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            except BaseException:
                os.close(fd)
                raise
            if held:
                break
            os.close(fd)  # lock the file at the path now
        try:
            yield True
        finally:
            try:
                path.unlink(missing_ok=True)  # while still holding, so no one can lock this file after us
            finally:
                os.close(fd)  # closing the descriptor releases the flock
            remove_if_empty(path.parent)

    def get_or_compute(self, key: str, compute: Callable[[], RunResult], recompute: bool = False,
                       recipe_name: str | None = None, wait: bool = True,
                       seed: int | None = None) -> tuple[RunResult, bool] | None:
        """The stored run ``key``, or compute and store it: (result, computed?).

        Under the claim the store is checked again, because another process may have
        finished the run while this one waited.  ``recompute`` replaces a stored run.
        ``recipe_name``: the name of the recipe asking, kept as an alias of a stored run.
        ``wait=False`` returns None at once while another process is training the run, so a
        study can train its other seeds meanwhile.
        An unreadable stored record counts as missing (one of another ``seed`` than the key's
        too): the run is computed again and replaces it.
        """
        def reused(stored: RunResult) -> tuple[RunResult, bool]:
            return (stored if recipe_name is None else self.add_recipe_alias(stored, recipe_name)), False

        if not recompute and (stored := self.reusable(key, seed=seed)) is not None:
            return reused(stored)
        with self.lock(key, blocking=wait) as held:
            if not held:
                return None
            if not recompute and (stored := self.reusable(key, claimed=True, seed=seed)) is not None:
                return reused(stored)
            self.check_writable()
            result = compute()
            if result.key != key:
                raise StoreError(f"{self.path}: compute for run {key} returned a run with key {result.key}; "
                                 f"{self._keep_unstored(result)}")
            return self.store_trained(result, replace=recompute), True

    def store_trained(self, result: RunResult, replace: bool = False) -> RunResult:
        """Store a run this process trained holding its claim; the copy the store then holds.  An
        import takes no claim, and may have stored another copy meanwhile: that one counts, unless
        only a newer stabench reads it."""
        if not self.put(result, replace=replace):
            with contextlib.suppress(StoreError):
                return self.get(result.key) or result
        return result


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic garbage collection while thousands of records are parsed: they make millions of
    containers in no cycle, which the collector would walk again and again (a third of the time
    reading 41,000 runs took)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _kept_path(folder: Path, key: str, holds: Callable[[Path], bool] = lambda path: False) -> Path:
    """``folder/KEY.json``, else ``KEY.2.json``, ``KEY.3.json`` ...: the first that is free or
    ``holds`` this copy already, so that a kept copy is never written over."""
    path, number = folder / f"{key}.json", 1
    while path.exists() and not holds(path):
        number += 1
        path = folder / f"{key}.{number}.json"
    return path


def _stored_copy(record: bytes, key: str) -> tuple[RunResult | None, str]:
    """(the stored run ``key``, when this version reads it; "read", "newer" or "damaged").  A
    record of a newer stabench is not damaged; one edited into another run's is."""
    try:
        run = RunResult.from_json(record)
        _check_is_run(run, key)
        return run, "read"
    except NewerRecord:
        return None, "newer"
    except _RECORD_ERRORS:
        return None, "damaged"


def _check_is_run(run: RunResult, key: str) -> None:
    """A record stored under ``key`` whose contents make another key (its seed, task, model,
    recipe hash or stack edited in the store) would be read as the run it is not: ValueError."""
    if run.key != key:
        raise ValueError(f"it is the record of run {run.key}: the record was edited after it was stored")
    if (own_key := key_of_record(run)) not in (None, key):
        made = f"key {own_key}" if own_key else "no key (a keyed field is missing)"
        raise ValueError(f"its contents make {made}: the record was edited after it was stored (its seed, "
                         f"task, model, recipe hash or stack)")


def _named(filter_name: str, value: Any, attribute: str) -> str:
    """The name or hash of a Task or Recipe given as a query filter."""
    found = getattr(value, attribute, None)
    if not isinstance(found, str):
        raise StoreError(f"{filter_name}={value!r} is invalid; expected a {filter_name} name or a "
                         f"{filter_name.capitalize()} object")
    return found


def _same_file(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is the file at ``path`` now (not a deleted one)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def check_storable(result: RunResult) -> None:
    """A RunResult with a key, or StoreError."""
    if not isinstance(result, RunResult):
        raise StoreError(f"can only store RunResult objects, got {type(result).__name__}")
    if not isinstance(result.key, str) or not result.key:
        raise StoreError(f"run has no key: {result.key!r}")


def row_of(result: RunResult) -> tuple[Any, ...]:
    """The column values for ``result``, ending with its full JSON record."""
    record = record_of(result)  # first: it checks that this is a run with a key
    return (*column_values(result), record)


def record_of(result: RunResult) -> str:
    """``result``'s full JSON record, or StoreError naming the run."""
    check_storable(result)
    try:
        return result.to_json()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"run {result.key} cannot be stored as JSON: {exc}") from exc


def column_values(result: RunResult) -> tuple[Any, ...]:
    """The values of ``COLUMNS`` for ``result``: what the store copies out of its record."""
    score = result.metrics.get(result.primary_metric)
    env = result.environment
    return (result.key, result.task.get("name"), result.model.get("name"), result.recipe_name,
            result.recipe_hash, result.seed, *(env.get(name) for name in KEY_FIELDS),
            int(result.failed), int(result.collapsed), int(result.diverged),
            score if isinstance(score, (int, float)) else None, result.finished_at)


def scored_differently(one: RunResult, other: RunResult) -> bool:
    """Whether two copies of one run disagree on what it scored (a GPU's nondeterminism, say)."""
    return (one.metrics, one.failed, one.collapsed, one.diverged) != \
        (other.metrics, other.failed, other.collapsed, other.diverged)


def both_scores(one: RunResult, other: RunResult) -> str:
    """``seed 2: accuracy 0.828 and 0.51 failed``, for a message about two copies of one run."""
    def score(run: RunResult) -> str:
        return f"{run.score:.4g}" + (" failed" if run.failed else "")
    return f"seed {one.seed}: {one.primary_metric} {score(one)} and {score(other)}"


def __getattr__(name: str) -> Any:
    """Names that moved to :mod:`stabench.exchange` on 2026-12-05 (the README named
    ``stabench.store.run_table``), still found here, with a warning, for scripts written before."""
    if name in ("read_export", "run_table"):
        warn(f"stabench.store.{name} is stabench.exchange.{name} now", DeprecationWarning)
        from . import exchange

        return getattr(exchange, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
