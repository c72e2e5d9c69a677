-- Step 6 — who wins (DESIGN "Who wins"), which splits R1–R4 (Mailchimp) from R5–R10 (CiviCRM):
--   no CiviCRM history row   => Mailchimp, if a member exists (also: no contact at all);
--     the same when the newest history row has no usable date (step 7 then refuses R2/R3);
--   member absent            => CiviCRM;
--   otherwise the later date, compared as UTC instants to the second;
--   a tie in the same second => CiviCRM (policy tie_winner may give ties to Mailchimp).
-- A member without last_changed (never seen from the real API) loses, as in the sync.
CREATE OR REPLACE TEMP VIEW decided AS
WITH t AS (
    SELECT p.*,
           date_trunc('second', p.civicrm_changed) AS c_sec,
           date_trunc('second', p.mailchimp_changed) AS m_sec
    FROM people p
)
SELECT t.* EXCLUDE (c_sec, m_sec),
       CASE
           WHEN NOT has_member THEN 'civicrm'
           WHEN civicrm_changed IS NULL THEN 'mailchimp'
           WHEN m_sec IS NULL THEN 'civicrm'
           WHEN c_sec > m_sec THEN 'civicrm'
           WHEN c_sec = m_sec THEN getvariable('tie_winner')
           ELSE 'mailchimp'
       END AS winner,
       coalesce(has_member AND has_history AND c_sec = m_sec, false) AS tie
FROM t;
