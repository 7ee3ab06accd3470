//! Duty: delete old finished jobs and their history (sql/maintenance.sql, `jobs._prune`).

use pgrx::prelude::*;

/// Sweeps the next `batch_size` pages of jobs.job, from where the last pass
/// of any session ended (jobs.maintenance_cursor), and deletes up to
/// `batch_size` jobs among them finished more than `retention_secs` ago;
/// returns how many. A pass that finds the cursor locked leaves pruning to
/// the pass holding it.
pub fn run_once(retention_secs: i32, batch_size: i32) -> i64 {
    let swept = Spi::connect_mut(|client| {
        let rows = client.update(
            "SELECT p.pruned, p.next_page, c.next_page
             FROM (SELECT c.next_page FROM jobs.maintenance_cursor c WHERE c.duty = 'prune'
                   FOR UPDATE SKIP LOCKED) c,
                  jobs._prune(pg_catalog.make_interval(secs => $1), $2, c.next_page, $2) p",
            Some(1),
            &[f64::from(retention_secs).into(), batch_size.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let (pruned, next_page, from_page) = rows.first().get_three::<i64, i64, i64>()?;
        // A table that one pass sweeps whole leaves the cursor at 0: no write.
        if next_page != from_page {
            client.update(
                "UPDATE jobs.maintenance_cursor SET next_page = $1 WHERE duty = 'prune'",
                None,
                &[next_page.unwrap_or(0).into()],
            )?;
        }
        Ok::<_, pgrx::spi::Error>(pruned)
    })
    .expect("jobs._prune");
    swept.unwrap_or(0)
}
