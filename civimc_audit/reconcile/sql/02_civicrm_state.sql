-- Step 2 — the CiviCRM side of every live contact for the audited group.
-- Serves: Civi-in / Civi-out (R1–R10: Added in civicrm_group_contact is in; Removed, Pending and
-- no row are out), civicrm_changed for "who wins" (the latest history row of any status, as UTC;
-- no row ⇒ Mailchimp wins), who gets a row (a group_contact row or any history row), the
-- consent fields (flag consent_conflict, policy honor_civicrm_consent) and the flags
-- civicrm_pending and no_civicrm_history.
-- Trashed contacts are left out here: they never match and get no row of their own (flag
-- contact_deleted is set on the member's row instead, step 3).
-- The latest history status is taken by (date, id): core lists history by date, and the sync
-- extension takes the highest id; the two agree unless dates were back-filled.
-- Rows without a usable date (a zero date reads as NULL) take no part in civicrm_changed or the
-- latest status (a NULL would sort last and win) — unless the newest row by id is one of them:
-- then the latest change happened on an unknown date and the contact's history is `undated`
-- (no civicrm_changed; the status is that newest row's, as the sync extension reads it). Step 7
-- makes R2/R3 cannot_sync no_history_date for them: no one is removed or added on an unknown
-- date (and, since Mailchimp then wins as with no history, no one is unsubscribed either).
CREATE OR REPLACE TEMP TABLE c_state AS
WITH gc AS (
    SELECT contact_id, arg_max(status, id) AS gc_status
    FROM civicrm_group_contact
    WHERE snapshot_id = getvariable('civicrm_snapshot') AND group_id = getvariable('group_id')
    GROUP BY contact_id
), h AS (
    SELECT contact_id,
           max(date) AS last_date,
           -- (the latest by (date, id) as one number: a struct key costs twice as much)
           arg_max(status, epoch_us(date)::HUGEINT * 18446744073709551616 + id)
               FILTER (WHERE date IS NOT NULL) AS last_status,
           arg_max(status, id) AS newest_status,
           arg_max(date IS NULL, id) AS undated
    FROM civicrm_subscription_history
    WHERE snapshot_id = getvariable('civicrm_snapshot') AND group_id = getvariable('group_id')
    GROUP BY contact_id
)
SELECT c.contact_id,
       c.display_name,
       gc.gc_status,
       coalesce(gc.gc_status = 'Added', false) AS civi_in,
       CASE WHEN NOT h.undated THEN h.last_date END AS civicrm_changed,
       CASE WHEN h.undated THEN h.newest_status ELSE h.last_status END AS history_status,
       h.contact_id IS NOT NULL AS has_history,
       coalesce(h.undated, false) AS history_undated,
       (gc.contact_id IS NOT NULL OR h.contact_id IS NOT NULL) AS in_population,
       c.do_not_email OR c.is_opt_out OR c.is_deceased AS consent_withheld,
       concat_ws(', ',
                 CASE WHEN c.do_not_email THEN 'do not email' END,
                 CASE WHEN c.is_opt_out THEN 'opted out of bulk email' END,
                 CASE WHEN c.is_deceased THEN 'deceased' END) AS consent_words
FROM c_contact c
LEFT JOIN gc USING (contact_id)
LEFT JOIN h USING (contact_id)
WHERE NOT c.is_deleted;
