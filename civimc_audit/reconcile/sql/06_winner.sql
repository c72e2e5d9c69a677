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
CREATE OR REPLACE TEMP VIEW decided AS
WITH t AS (
    SELECT p.*,
           date_trunc('second', p.civicrm_changed) AS c_sec,
           date_trunc('second', p.mailchimp_changed) AS m_sec,
           date_trunc('second', p.latest_in_changed) AS o_sec
    FROM people p
)
SELECT t.* EXCLUDE (c_sec, m_sec, o_sec),
       CASE
           WHEN NOT has_member THEN 'civicrm'
           WHEN civicrm_changed IS NULL THEN 'mailchimp'
           WHEN m_sec IS NULL THEN 'civicrm'
           WHEN c_sec > m_sec THEN 'civicrm'
           WHEN c_sec = m_sec THEN getvariable('tie_winner')
           ELSE 'mailchimp'
       END AS winner,
       coalesce(has_member AND has_history AND c_sec = m_sec, false) AS tie,
       coalesce(o_sec > c_sec OR (o_sec = c_sec AND getvariable('tie_winner') = 'mailchimp'),
                false) AS other_in_wins
FROM t;
