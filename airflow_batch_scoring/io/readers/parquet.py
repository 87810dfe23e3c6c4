"""Parquet: a piece is a list of row groups, read in batches; a bad row is named by its row number."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_batch_scoring.errors import InputError
from airflow_batch_scoring.io.readers.base import LeadingBadRows, PieceReader
from airflow_batch_scoring.io.readers.casts import CastFailure, bad_indices, cast_fails
from airflow_batch_scoring.io.readers.columns import ColumnMap, check_missing, coerce, refused_rows, resolve_columns
from airflow_batch_scoring.job import Piece


class ParquetReader(PieceReader):
    """Parquet: a piece is a list of row groups, read in batches of ``batch_size`` rows."""

    format = "parquet"

    def read(self, piece: Piece) -> Iterator[pa.Table]:
        with self._open(piece) as f:
            try:
                parquet = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as err:
                raise InputError(
                    f"is not a readable Parquet file ({err}); replace the file or remove it from the input.",
                    path=piece.path,
                ) from err
            columns = resolve_columns(parquet.schema_arrow.names, self.plan, piece.path)
            groups = piece.row_groups if piece.row_groups is not None else range(parquet.num_row_groups)
            starts = [0]
            for index in range(parquet.num_row_groups):
                starts.append(starts[-1] + parquet.metadata.row_group(index).num_rows)
            leading = LeadingBadRows(piece.path, applies=not groups or groups[0] == 0, unit="row")
            for group in groups:
                row = starts[group]
                try:
                    batches = parquet.iter_batches(
                        batch_size=self.batch_size, row_groups=[group], columns=columns.source_names
                    )
                    for batch in batches:
                        table = pa.Table.from_batches([batch])
                        try:
                            table = coerce(table, columns)
                            if self.plan.rejects:
                                check_missing(table, columns, self.plan)
                        except CastFailure as failure:
                            if self.on_bad_row is None:
                                raise InputError(
                                    failure.message(), path=piece.path, row=row + failure.index + 1,
                                    column=failure.column,
                                ) from None
                            table = self._quarantine(table, columns, piece, row, leading)
                        row += batch.num_rows
                        if table.num_rows:
                            leading.good = True
                            yield columns.output(table)
                except (pa.ArrowInvalid, OSError) as err:
                    raise InputError(
                        f"row group {group} cannot be read ({err}); the file is damaged: replace it.", path=piece.path
                    ) from err
            leading.finish(whole_file=sorted(groups) == list(range(parquet.num_row_groups)))

    def _quarantine(
        self, table: pa.Table, columns: ColumnMap, piece: Piece, first_row: int, leading: LeadingBadRows
    ) -> pa.Table:
        """Hand the rows whose values do not fit their types (or that hold a value the plan rejects) to
        ``on_bad_row``; return the others, coerced."""
        assert self.on_bad_row is not None
        bad: dict[int, CastFailure] = {}
        for position, (_, source, arrow_type) in enumerate(columns.typed()):
            array = table.column(source)
            if arrow_type is None or array.type == arrow_type or not cast_fails(array, arrow_type):
                continue
            for index in bad_indices(array, arrow_type):
                bad.setdefault(index, columns.failure(position, index, array[index].as_py(), arrow_type))
        kept = [index for index in range(table.num_rows) if index not in bad]
        good = coerce(table.take(pa.array(kept, pa.int64())), columns)
        if self.plan.rejects:
            refused = refused_rows(good, columns, self.plan)
            bad.update((kept[position], failure) for position, failure in refused.items())
            good = good.filter(pa.array([position not in refused for position in range(good.num_rows)], pa.bool_()))
        sources = columns.source_names
        for index in sorted(bad):
            values = {source_name: table.column(source_name)[index].as_py() for source_name in sources}
            record = bad[index].diagnosis().bad_row(
                piece.path, row=first_row + index + 1, raw=json.dumps(values, default=str, ensure_ascii=False)
            )
            self.on_bad_row(record)
            leading.add(record)
        return good
