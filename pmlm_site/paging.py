"""Paging lists of records with the page and the total read in one query.

Django's paginator asks the database twice for every page: COUNT(*) for the total, then the page's rows.
On the clinic's lists most of each query's cost is Django building its SQL, not the database running it,
so here each row of the page carries the total (COUNT(*) OVER (), counted before LIMIT) and the count
query is made only when the page has no rows: past the end, or an empty list. The pages, their numbers
and the errors for a bad page number are Django's own.

A list whose SQL is a function of a few inputs (`KeptRows`) has its pages' SQL compiled once per process and key,
then run each time; its queryset is not even built when the SQL is kept. Building the patient list's queryset and
compiling it were a fifth of the API list's time. Only the SQL is kept, never what it reads."""

import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property

from django.core.exceptions import EmptyResultSet
from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db import connections
from django.db.models import Count, QuerySet, Window
from django.db.models.query import ModelIterable, NamedValuesListIterable
from django.db.models.utils import create_namedtuple_class

TOTAL = "paging_total_rows"  # the annotation each row carries
LARGEST_OFFSET = 2**62  # beyond it a database refuses the OFFSET itself: such a page is counted first (and refused)
KEPT_SQL = 512  # pages' SQL kept per process, least recently used out first

_kept: OrderedDict[tuple, object] = OrderedDict()  # key: (sql, params, columns, converters, database) or NOT_KEPT
_kept_lock = threading.Lock()


class KeptRows:
    """A list of named rows (`values_list(..., named=True)`) whose SQL is a function of `key` alone: `build` makes
    its queryset from exactly the values in `key` (her organisation, the day, the filters) and nothing else. Paged by
    OneQueryPaginator, each page's SQL is compiled once per process, key and page, and `build` is called only when a
    page's SQL is not kept yet (or cannot be kept)."""

    def __init__(self, key: tuple, build: Callable[[], QuerySet]):
        self.key, self._build = key, build

    @cached_property
    def rows(self) -> QuerySet:
        return self._build()


NOT_KEPT = object()  # kept for a key whose SQL cannot be run as it is: compiled on each read


def _compiled(window: QuerySet):
    compiler = window.query.get_compiler(window.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # can match nothing: Django answers without asking the database
        return NOT_KEPT
    query, selects = window.query, [select[0] for select in compiler.select[: compiler.col_count]]
    columns = (*query.extra_select, *query.values_select, *query.annotation_select)
    if columns != tuple(window._fields) or any(compiler.connection.ops.get_db_converters(e) for e in selects):
        return NOT_KEPT
    # What is left is the expressions' own conversions (the total read as an int): pure, run on each read.
    return (sql, tuple(params), columns, tuple(compiler.get_converters(selects).items()), window.db)


def _kept_sql(key: tuple, window: Callable[[], QuerySet]):
    """The SQL kept for `key`, compiled from `window()` the first time (or NOT_KEPT)."""
    with _kept_lock:
        kept = _kept.get(key)
        if kept is not None:
            _kept.move_to_end(key)
    if kept is None:
        kept = _compiled(window())
        with _kept_lock:
            _kept[key] = kept
            while len(_kept) > KEPT_SQL:
                _kept.popitem(last=False)
    return kept


def _rows_by_kept_sql(kept: tuple) -> list:
    """The rows of a page of named rows, by its kept SQL."""
    sql, params, columns, converters, db = kept
    connection = connections[db]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    row = create_namedtuple_class(*columns)
    if not converters:
        return [tuple.__new__(row, values) for values in fetched]
    rows = []
    for values in map(list, fetched):
        for position, (convert, expression) in converters:
            for converter in convert:
                values[position] = converter(values[position], expression, connection)
        rows.append(tuple.__new__(row, values))
    return rows


class OneQueryPaginator(Paginator):
    def _whole(self, number) -> int:
        """The page number as validate_number reads it, without the total: not a whole number, or below 1,
        raises as Django does; past the last page is found out by reading it."""
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def _counts_with_rows(self) -> bool:
        """Only where a window count is the paginator's count: plain rows of a model (or named tuples of its fields),
        not DISTINCT (the window counts before it), a UNION or an already sliced query (which take no annotation)."""
        rows = self.object_list
        return (
            isinstance(rows, QuerySet)
            and rows._iterable_class in (ModelIterable, NamedValuesListIterable)
            and not (rows.query.distinct or rows.query.combinator or rows.query.is_sliced)
            and not self.orphans
            and "count" not in self.__dict__  # already counted: nothing to save
        )

    def _window(self, rows: QuerySet, bottom: int) -> QuerySet:
        """The page's rows, each carrying the total."""
        counted = rows.annotate(**{TOTAL: Window(Count("*"))})
        if counted._iterable_class is NamedValuesListIterable:  # named tuples name only the fields they were given
            counted = counted.values_list(*rows._fields, TOTAL, named=True)
        return counted[bottom : bottom + self.per_page]

    def _kept_page(self, kept: KeptRows, number: int) -> list:
        """A kept list's page by its kept SQL, its queryset unbuilt; [] where that cannot answer (nothing on the
        page, SQL that cannot be kept): the caller pages the built queryset instead."""
        bottom = (number - 1) * self.per_page
        if bottom > LARGEST_OFFSET:
            return []
        sql = _kept_sql((kept.key, bottom, self.per_page), lambda: self._window(kept.rows, bottom))
        return [] if sql is NOT_KEPT else _rows_by_kept_sql(sql)

    def page(self, number) -> Page:
        if isinstance(self.object_list, KeptRows):
            number = self._whole(number)
            rows = self._kept_page(self.object_list, number)
            if rows:
                self.count = getattr(rows[0], TOTAL)
                return self._get_page(rows, number, self)
            self.object_list = self.object_list.rows  # built now: paged as any other list
        if not self._counts_with_rows():
            return super().page(number)
        number = self._whole(number)
        bottom = (number - 1) * self.per_page
        if bottom > LARGEST_OFFSET:
            return super().page(number)
        rows = list(self._window(self.object_list, bottom))
        if not rows:  # past the end, or nothing at all: the count says which (and Django's page raises or not)
            return super().page(number)
        self.count = getattr(rows[0], TOTAL)  # what Paginator.count would have counted, kept as it keeps it
        return self._get_page(rows, number, self)

    def get_page(self, number) -> Page:
        """As Django's: a page number that is not a whole number gives the first page, one out of range the last."""
        try:
            number = self._whole(number)
        except PageNotAnInteger:
            number = 1
        except EmptyPage:
            return super().get_page(number)
        try:
            return self.page(number)
        except EmptyPage:
            return self.page(self.num_pages)
