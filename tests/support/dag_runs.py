"""What a ``dag.test()`` run left in the Airflow metadata DB: a task's XCom return value, the rendered fields."""

from __future__ import annotations


def xcom_of(dag_run, task_id: str = "score", key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one()
        )
        return row.value


def rendered_fields(dag_run) -> dict:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).one()
        return row.rendered_fields
