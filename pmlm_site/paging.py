"""Paging lists of records with the page and the total read in one query.

Django's paginator asks the database twice for every page: COUNT(*) for the total, then the page's rows.
On the clinic's lists most of each query's cost is Django building its SQL, not the database running it,
so here each row of the page carries the total (COUNT(*) OVER (), counted before LIMIT) and the count
query is made only when the page has no rows: past the end, or an empty list. The pages, their numbers
and the errors for a bad page number are Django's own."""

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import Count, QuerySet, Window
from django.db.models.query import ModelIterable, NamedValuesListIterable

TOTAL = "paging_total_rows"  # the annotation each row carries
LARGEST_OFFSET = 2**62  # beyond it a database refuses the OFFSET itself: such a page is counted first (and refused)


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

    def page(self, number) -> Page:
        if not self._counts_with_rows():
            return super().page(number)
        number = self._whole(number)
        bottom = (number - 1) * self.per_page
        if bottom > LARGEST_OFFSET:
            return super().page(number)
        counted = self.object_list.annotate(**{TOTAL: Window(Count("*"))})
        if counted._iterable_class is NamedValuesListIterable:  # named tuples name only the fields they were given
            counted = counted.values_list(*self.object_list._fields, TOTAL, named=True)
        rows = list(counted[bottom : bottom + self.per_page])
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
