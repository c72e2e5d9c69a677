-- Step 6 — who wins (DESIGN "Who wins"), which splits R1–R4 (Mailchimp) from R5–R10 (CiviCRM):
--   no CiviCRM history row   => Mailchimp, if a member exists (also: no contact at all);
--     the same when the newest history row has no usable date (step 7 then refuses R2/R3);
--   member absent            => CiviCRM;
--   otherwise the later date, compared as UTC instants to the second;
--   a tie in the same second => CiviCRM (policy tie_winner may give ties to Mailchimp).
-- A member without last_changed loses, as in the sync; step 7 then holds its row back
-- (cannot_sync no_member_change_date), so nothing is done on that unknown date.
-- other_in_wins (R9 other_email_subscribed): the contact's latest MC-in member wins against
-- CiviCRM by the same test. On a row CiviCRM wins that member is another one.
-- Date evidence (DESIGN "Date evidence: which change decided"; rows R2/R3, chosen by step 7b):
-- the snapshot step stored, for this pair of snapshots, the time of the member's latest
-- subscription event in Mailchimp's activity feed (mailchimp_status_changed; NULL when the feed
-- records none) or that the feed could not be read (evidence_state 'unreadable').
--   profile_edit_decided  Mailchimp won on last_changed, but its status changed no later than
--                         CiviCRM's date: a profile edit (name, interest) made Mailchimp "later".
--   policy date_basis = 'status_change' decides those rows by the status-change date instead
--   (to the second; a tie per tie_winner), which flips R2 to R7 and R3 to R9; the default
--   'last_changed' keeps the sync's decision and only flags them.
CREATE OR REPLACE TEMP VIEW decided AS
WITH t AS (
    SELECT p.*,
           e.state AS evidence_state,
           e.status_changed AS mailchimp_status_changed,
           e.status_event AS mailchimp_status_event,
           date_trunc('second', p.civicrm_changed) AS c_sec,
           date_trunc('second', p.mailchimp_changed) AS m_sec,
           date_trunc('second', p.latest_in_changed) AS o_sec,
           date_trunc('second', e.status_changed) AS s_sec
    FROM people p
    LEFT JOIN mailchimp_evidence e
        ON e.mailchimp_snapshot_id = getvariable('mailchimp_snapshot')
       AND e.civicrm_snapshot_id = getvariable('civicrm_snapshot')
       AND e.member_id = p.member_id
), w AS (
    SELECT t.*,
           CASE
               WHEN NOT has_member THEN 'civicrm'
               WHEN civicrm_changed IS NULL THEN 'mailchimp'
               WHEN m_sec IS NULL THEN 'civicrm'
               WHEN c_sec > m_sec THEN 'civicrm'
               WHEN c_sec = m_sec THEN getvariable('tie_winner')
               ELSE 'mailchimp'
           END AS last_changed_winner
    FROM t
)
SELECT w.* EXCLUDE (c_sec, m_sec, o_sec, s_sec),
       coalesce(last_changed_winner = 'mailchimp' AND evidence_state = 'read'
                AND s_sec <= c_sec, false) AS profile_edit_decided,
       CASE
           WHEN getvariable('date_basis') = 'status_change' AND last_changed_winner = 'mailchimp'
                AND evidence_state = 'read' AND s_sec < c_sec THEN 'civicrm'
           WHEN getvariable('date_basis') = 'status_change' AND last_changed_winner = 'mailchimp'
                AND evidence_state = 'read' AND s_sec = c_sec THEN getvariable('tie_winner')
           ELSE last_changed_winner
       END AS winner,
       coalesce(has_member AND has_history AND c_sec = m_sec, false) AS tie,
       -- (other_member_in: a row flipped to R9 by date_basis is itself the contact's latest
       -- MC-in member; only another member can make it other_email_subscribed.)
       coalesce(other_member_in
                AND (o_sec > c_sec OR (o_sec = c_sec AND getvariable('tie_winner') = 'mailchimp')),
                false) AS other_in_wins
FROM w;
