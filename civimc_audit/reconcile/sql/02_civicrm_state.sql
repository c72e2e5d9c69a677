-- Step 2 — CiviCRM state of every live contact for the audited group.
-- Terms: Civi-in = civicrm_group_contact.status 'Added' for a contact that is not deleted;
-- otherwise Civi-out. civicrm_changed = date of the latest history row for (contact, group),
-- any status (latest by date, then by id, as core lists history). Trashed contacts are left out
-- here: they never match and get no row of their own (matching rule, flag contact_deleted).
CREATE OR REPLACE TEMP TABLE c_state AS
WITH gc AS (
    SELECT contact_id, any_value(status) AS gc_status
    FROM civicrm_group_contact
    WHERE snapshot_id = getvariable('civicrm_snapshot') AND group_id = getvariable('group_id')
    GROUP BY contact_id
), h AS (
    SELECT contact_id,
           max(date) AS last_date,
           arg_max(status, (date, id)) AS last_status,
           count(*) AS n_history
    FROM civicrm_subscription_history
    WHERE snapshot_id = getvariable('civicrm_snapshot') AND group_id = getvariable('group_id')
    GROUP BY contact_id
)
SELECT c.contact_id,
       gc.gc_status,
       coalesce(gc.gc_status = 'Added', false) AS civi_in,
       h.last_date AS civicrm_changed,
       h.last_status AS history_status,
       h.contact_id IS NOT NULL AS has_history,
       (gc.contact_id IS NOT NULL OR h.contact_id IS NOT NULL) AS in_population,
       c.do_not_email OR c.is_opt_out OR c.is_deceased AS consent_withheld
FROM c_contact c
LEFT JOIN gc USING (contact_id)
LEFT JOIN h USING (contact_id)
WHERE NOT c.is_deleted;
