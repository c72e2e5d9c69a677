-- Step 10 — interest groups, inputs (DESIGN "Interest groups (the sync's second decision
-- table)"; docs/mailchimpsync-behaviour.md §1.6). Serves I1–I6.
-- i_map: the [interests] mapping the CiviCRM snapshot was taken with (interest id -> CiviCRM
-- group id, the group's title), named from the audience's catalogue; `in_audience` is false for
-- a mapped interest the audience does not have (its rows get I1).
CREATE OR REPLACE TEMP TABLE i_map AS
WITH m AS (
    SELECT unnest(json_transform(meta -> 'interest_groups',
                  '[{"interest_id": "VARCHAR", "group_id": "BIGINT", "title": "VARCHAR"}]')) AS g
    FROM snapshots
    WHERE id = getvariable('civicrm_snapshot')
)
SELECT g.interest_id, g.group_id, g.title AS group_title,
       c.name AS interest_name, c.category_title, c.id IS NOT NULL AS in_audience,
       list_position(getvariable('interest_paths'), concat('$."', g.interest_id, '"')) AS pos
FROM m
LEFT JOIN mailchimp_interest c
       ON c.snapshot_id = getvariable('mailchimp_snapshot') AND c.id = g.interest_id;

-- i_people: who gets interest rows — only people whose subscription outcome leaves them
-- subscribed: rules R1, R3, R5, R6, R7 when the outcome is not cannot_sync (nor turned into a
-- removal by policy honor_civicrm_consent). The sync runs §1.6 only for a final state of
-- subscribed; unsubscribes leave interests alone. `interests` is the member's map (interest id ->
-- true/false) as Mailchimp sent it, read once per member for every mapped interest at once
-- (`interest_paths`, in i_map's `pos` order; a missing or non-boolean entry reads as NULL); no
-- member (R6) means no entries at all.
CREATE OR REPLACE TEMP TABLE i_people AS
SELECT o.person_id, o.email, o.contact_id, o.member_id, o.display_name, o.mailchimp_changed,
       json_extract(mm.interests, getvariable('interest_paths')) AS interests
FROM outcomes o
LEFT JOIN mailchimp_member mm
       ON mm.snapshot_id = getvariable('mailchimp_snapshot') AND mm.id = o.member_id
WHERE o.reconciliation_id = getvariable('reconciliation_id')
  AND o.rule IN ('R1', 'R3', 'R5', 'R6', 'R7')
  AND o.outcome IN ('no_change', 'add_to_civicrm_group', 'add_to_mailchimp',
                    'resubscribe_in_mailchimp')
  AND EXISTS (SELECT 1 FROM i_map);

-- i_civi: the CiviCRM side per (contact, mapped group), read exactly as step 2 reads the
-- subscription group: civi_in = group_contact status Added (Removed, Pending, no row are out);
-- civicrm_changed = the latest history date of any status (UTC: the snapshot converted DATETIME
-- dates from the site's zone); a newest-by-id row without a usable date makes the history
-- `undated` (no civicrm_changed; step 11 then refuses I3/I4 as for R2/R3). Only the contacts
-- of i_people are read: nobody else gets interest rows.
CREATE OR REPLACE TEMP TABLE i_civi AS
WITH gc AS (
    SELECT contact_id, group_id, arg_max(status, id) AS gc_status
    FROM civicrm_group_contact
    WHERE snapshot_id = getvariable('civicrm_snapshot')
      AND group_id IN (SELECT group_id FROM i_map)
      AND contact_id IN (SELECT contact_id FROM i_people)
    GROUP BY contact_id, group_id
), h AS (
    SELECT contact_id, group_id,
           max(date) AS last_date,
           arg_max(status, (date, id)) FILTER (WHERE date IS NOT NULL) AS last_status,
           arg_max(status, id) AS newest_status,
           arg_max(date IS NULL, id) AS undated
    FROM civicrm_subscription_history
    WHERE snapshot_id = getvariable('civicrm_snapshot')
      AND group_id IN (SELECT group_id FROM i_map)
      AND contact_id IN (SELECT contact_id FROM i_people)
    GROUP BY contact_id, group_id
)
SELECT contact_id, group_id, gc.gc_status,
       coalesce(gc.gc_status = 'Added', false) AS civi_in,
       CASE WHEN NOT h.undated THEN h.last_date END AS civicrm_changed,
       CASE WHEN h.undated THEN h.newest_status ELSE h.last_status END AS history_status,
       h.contact_id IS NOT NULL AS has_history,
       coalesce(h.undated, false) AS history_undated
FROM gc FULL JOIN h USING (contact_id, group_id);
